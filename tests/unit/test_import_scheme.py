"""The top-level `operator/` folder must never shadow the standard library's `operator`.

`operator/` has no `__init__.py`: it is only a namespace portion, mapped into
`gpu_inventory.operator` by pyproject. The path finder keeps scanning past a namespace portion,
so the stdlib's `operator.py` wins for every way Python is started, including `python -m`
from the repo root (which puts the root first on `sys.path`) without `PYTHONSAFEPATH`.
"""

import importlib
import operator
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_operator_is_the_standard_library_module() -> None:
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    assert Path(operator.__file__).resolve().parent == stdlib
    assert "itemgetter" in vars(operator)  # (mypy itself resolves the name to our folder)


def test_our_operator_imports_under_the_namespace() -> None:
    ours = importlib.import_module("gpu_inventory.operator")
    assert (REPO_ROOT / "operator").resolve() in {Path(p).resolve() for p in ours.__path__}
    assert ours is not operator
    assert not (REPO_ROOT / "operator" / "__init__.py").exists()


def _from_repo_root(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run `python args...` in the repo root as a newcomer would: no PYTHONSAFEPATH."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONSAFEPATH", "PYTHONPATH")}
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    "args",
    [
        ("-m", "pip", "--version"),
        ("-c", "import operator, collections; print(operator.__file__)"),
        ("-m", "gpu_inventory.operator", "--help"),
    ],
    ids=["python -m pip", "python -c", "python -m gpu_inventory.operator"],
)
def test_python_started_from_the_repo_root(args: tuple[str, ...], tmp_path: Path) -> None:
    result = _from_repo_root(*args, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "cannot import name" not in result.stderr


def test_python_m_venv_from_the_repo_root(tmp_path: Path) -> None:
    result = _from_repo_root(
        "-m", "venv", "--without-pip", str(tmp_path / "venv"), tmp_path=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "venv" / "bin" / "python").exists()
