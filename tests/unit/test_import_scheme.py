"""The top-level `operator/` folder must never shadow the standard library's `operator`."""

import importlib
import operator
import sysconfig
from pathlib import Path


def test_operator_is_the_standard_library_module() -> None:
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    assert Path(operator.__file__).resolve().parent == stdlib
    assert "itemgetter" in vars(operator)  # (mypy itself resolves the name to our folder)


def test_our_operator_imports_under_the_namespace() -> None:
    ours = importlib.import_module("gpu_inventory.operator")
    assert Path(ours.__file__ or "").resolve().parent.name == "operator"
    assert ours is not operator
