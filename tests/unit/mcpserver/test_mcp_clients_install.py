"""The MCP clients the tests run are installed exactly, or the install says why it failed.

`hack/install-mcp-clients.sh` installs the MCP Inspector with `npm ci` from the committed
`hack/mcp-inspector/package-lock.json`, so a new release of any of its ~260 dependencies (its
@modelcontextprotocol/sdk floated from 1.25 to 1.32 under a caret range) changes nothing until
the lockfile is regenerated. curl and jq come from apt-get when missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from gpu_inventory.testing.binaries import REPO_ROOT

LOCKED = REPO_ROOT / "hack" / "mcp-inspector"
SCRIPT = REPO_ROOT / "hack" / "install-mcp-clients.sh"
INSPECTOR = "@modelcontextprotocol/inspector"


def read(name: str) -> dict[str, Any]:
    return dict(json.loads((LOCKED / name).read_text()))


def test_the_inspector_is_pinned_exactly_and_the_lockfile_matches_it() -> None:
    wanted = read("package.json")["dependencies"]
    lock = read("package-lock.json")
    packages = lock["packages"]

    assert wanted[INSPECTOR][0].isdigit(), "an exact version, not a range"
    assert packages[""]["dependencies"] == wanted, "regenerate the lockfile"
    assert packages[f"node_modules/{INSPECTOR}"]["version"] == wanted[INSPECTOR]
    assert packages["node_modules/@modelcontextprotocol/sdk"]["version"].startswith("1.")


def test_every_locked_package_is_checked_by_its_hash() -> None:
    """`npm ci` refuses a tarball whose SHA-512 differs from the lockfile's `integrity`."""
    packages = read("package-lock.json")["packages"]
    unchecked = [
        path
        for path, entry in packages.items()
        if path and not entry.get("link") and not entry.get("integrity", "").startswith("sha512-")
    ]

    assert unchecked == []


def test_a_failing_apt_get_stops_the_install_with_the_reason(tmp_path: Path) -> None:
    """`apt-get update && apt-get install` under `set -e` used to carry on when the update
    failed (bash ignores a failure on the left of &&) and report success without jq. Here jq is
    missing, the process runs as root (a stub `id`), and apt-get fails (a stub)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("dirname", "sha256sum", "cut", "curl"):
        found = shutil.which(tool)
        assert found is not None, tool
        (bin_dir / tool).symlink_to(found)
    for stub, text in (("id", "echo 0"), ("apt-get", "echo 'E: no network' >&2; exit 100")):
        (bin_dir / stub).write_text(f"#!/bin/sh\n{text}\n")
        (bin_dir / stub).chmod(0o755)
    bash = shutil.which("bash")
    assert bash is not None

    done = subprocess.run(
        [bash, str(SCRIPT)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": str(bin_dir), "HOME": str(tmp_path), "LANG": os.environ.get("LANG", "C")},
    )

    assert done.returncode != 0
    assert done.stdout == ""
    assert "apt-get could not install jq" in done.stderr
