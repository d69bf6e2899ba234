"""The image's recipe: a base pinned by digest, dependencies exactly as locked with hashes, no
test helpers in what clusters run. (No Docker engine here: the build itself runs in
hack/publish-image.sh; these check what it builds from.)"""

from __future__ import annotations

import re
import tomllib

from packaging.requirements import Requirement
from packaging.version import Version

from gpu_inventory.testing.binaries import REPO_ROOT

DOCKERFILE = (REPO_ROOT / "Dockerfile").read_text()
LOCK = (REPO_ROOT / "requirements.lock").read_text()
BUILD_LOCK = (REPO_ROOT / "requirements-build.lock").read_text()


def locked(lock: str = LOCK) -> dict[str, tuple[Version, int]]:
    """name -> (pinned version, number of hashes), from a lock file (`make lock`)."""
    entries: dict[str, tuple[Version, int]] = {}
    for block in re.split(r"\n(?=\S)", lock):
        match = re.match(r"([A-Za-z0-9_.-]+)==([^ ;\\\n]+)", block)
        if match:
            name = match.group(1).lower().replace("_", "-")
            entries[name] = (Version(match.group(2)), block.count("--hash=sha256:"))
    return entries


def test_every_dependency_is_locked_with_hashes_at_a_version_pyproject_allows() -> None:
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    entries = locked()
    assert len(entries) > 20
    for spec in pyproject["project"]["dependencies"]:
        requirement = Requirement(spec)
        name = requirement.name.lower().replace("_", "-")
        assert name in entries, f"{name} is not in requirements.lock: run `make lock`"
        version, _ = entries[name]
        assert requirement.specifier.contains(version, prereleases=True), (spec, version)
    unhashed = [name for name, (_, hashes) in entries.items() if hashes == 0]
    assert not unhashed


def test_the_image_is_pinned_locked_and_ships_no_test_helpers() -> None:
    assert re.search(r"^ARG BASE=python:3\.11-slim-bookworm@sha256:[0-9a-f]{64}$", DOCKERFILE, re.M)
    assert "--require-hashes --no-deps -r /tmp/requirements.lock" in DOCKERFILE
    runtime = DOCKERFILE.split("FROM ${BASE} AS runtime", 1)[1].split("FROM runtime AS kind")[0]
    assert 'rm -rf "$site/gpu_inventory/testing"' in runtime
    assert 'find_spec("gpu_inventory.testing") is not None' in runtime
    assert "USER 65532:65532" in runtime
    for label in ("source", "version", "revision", "created", "licenses"):
        assert f"org.opencontainers.image.{label}=" in runtime
    ignored = (REPO_ROOT / ".dockerignore").read_text().split()
    assert {".demo", ".venv", ".cluster", ".pytest_cache", ".mypy_cache", "tests"} <= set(ignored)


def test_the_wheel_is_built_with_the_locked_hashed_build_backend() -> None:
    """pip's build isolation would fetch the newest setuptools, unpinned and unhashed."""
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    entries = locked(BUILD_LOCK)
    for spec in pyproject["build-system"]["requires"]:
        requirement = Requirement(spec)
        version, hashes = entries[requirement.name.lower()]
        assert requirement.specifier.contains(version), (spec, version)
        assert hashes > 0
    wheel = DOCKERFILE.split("FROM ${BASE} AS wheel", 1)[1].split("FROM ${BASE} AS runtime")[0]
    install = wheel.index("--require-hashes --no-deps -r /tmp/requirements-build.lock")
    assert install < wheel.index("pip wheel --no-cache-dir --no-deps --no-build-isolation")
    assert "requirements-build.lock" not in (REPO_ROOT / ".dockerignore").read_text()


def test_the_wheel_lists_every_package_folder() -> None:
    """setuptools builds only the `packages` pyproject names: a sub-package missing there is
    missing from the image (its imports fail in the cluster), while an editable install, which
    maps whole folders, never notices."""
    setuptools = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = set()
    for package, folder in setuptools["package-dir"].items():
        for module in (REPO_ROOT / folder).rglob("*.py"):
            parts = module.parent.relative_to(REPO_ROOT / folder).parts
            found.add(".".join((package, *parts)))
    assert found == set(setuptools["packages"])
