"""`gpu-inventory-agent --once`: read NVML once, print the GPUNode status it would write, exit.
No cluster and no kubeconfig, and nothing imported beyond nvidia-ml-py, pydantic and PyYAML."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from gpu_inventory.api import models

# Run in a fresh interpreter where the Kubernetes client cannot be imported at all; after the
# run, list the third-party packages that were imported.
_PROBE = """
import json, sys
for name in ("kubernetes", "urllib3", "kopf", "mcp"):
    sys.modules[name] = None  # `import name` now raises ImportError
from gpu_inventory.testing.simagent import main
code = main(sys.argv[1:])
loaded = sorted({m.split(".")[0] for m in sys.modules if sys.modules[m] is not None})
print(json.dumps({"loaded": loaded}), file=sys.stderr)
raise SystemExit(code)
"""

# The agent's own dependencies and theirs (pydantic's: pydantic-core, typing-extensions,
# annotated-types, typing-inspection).
ALLOWED = {
    "nvidia-ml-py",
    "pydantic",
    "pydantic_core",
    "PyYAML",
    "typing_extensions",
    "annotated-types",
    "typing-inspection",
}
# Loaded by the interpreter's start-up (.pth files), not by the agent.
AT_STARTUP = {"setuptools", "gpu-inventory"}


def run_once(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "NODE_NAME")}
    return subprocess.run(
        [sys.executable, "-c", _PROBE, *args],
        capture_output=True,
        text=True,
        env={**clean, "PYTHONSAFEPATH": "1", "KUBECONFIG": "/nonexistent", **(env or {})},
        timeout=120,
    )


def third_party(stderr: str) -> set[str]:
    """The distributions whose modules the run imported."""
    loaded: list[str] = json.loads(stderr.strip().splitlines()[-1])["loaded"]
    owners = importlib.metadata.packages_distributions()
    found = {dist for module in loaded for dist in owners.get(module, [])}
    return found - AT_STARTUP


def test_once_prints_a_valid_gpunode_status_without_a_cluster() -> None:
    result = run_once("--scenario=h100-8x-mig", "--once")
    assert result.returncode == 0, result.stderr
    status: dict[str, Any] = json.loads(result.stdout)
    parsed = models.GPUNodeStatus.model_validate(status)  # the shape the agent writes
    assert set(status) == {"summary", "agent", "driver", "gpus"}
    assert parsed.agent is not None
    assert parsed.agent.nvml_available
    assert parsed.summary is not None
    assert parsed.summary.gpus == len(parsed.gpus) == 8
    assert sum(len(g.mig.instances) for g in parsed.gpus) == 14
    assert third_party(result.stderr) <= ALLOWED, "--once imported more than it needs"


def test_once_without_nvml_says_why_and_exits_1() -> None:
    result = run_once("--scenario=no-driver", "--once")
    assert result.returncode == 1, result.stderr
    status = json.loads(result.stdout)
    assert status["agent"]["nvmlAvailable"] is False
    assert status["agent"]["message"] == "NVML: Driver Not Loaded (DriverNotLoaded)"
    assert (status["summary"]["gpus"], status["gpus"]) == (0, [])
    # One read and exit: no log line promises a retry or a write that never comes.
    assert "NVML unavailable: NVML: Driver Not Loaded" in result.stderr
    assert "retrying" not in result.stderr
    assert "status due" not in result.stderr


def test_once_reports_this_machines_boot_id() -> None:
    """The kubelet reports the Node's bootID from /proc/sys/kernel/random/boot_id; --once has
    no Node, so it reads the same file."""
    result = run_once("--scenario=t4-single", "--once")
    assert result.returncode == 0, result.stderr
    with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as found:
        assert json.loads(result.stdout)["agent"]["bootId"] == found.read().strip()


def test_the_console_script_once_on_this_machine_reads_the_real_library(tmp_path: Path) -> None:
    """No simulation: whatever this machine has (CI has no NVIDIA driver; a GPU machine has
    one), the exit code and the status agree, and a status without NVML says why."""
    script = str(Path(sys.executable).with_name("gpu-inventory-agent"))
    result = subprocess.run(
        [script, "--once"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONSAFEPATH": "1", "KUBECONFIG": str(tmp_path / "none")},
        timeout=120,
    )
    status = json.loads(result.stdout)
    parsed = models.GPUNodeStatus.model_validate(status)
    assert parsed.agent is not None
    assert result.returncode == (0 if parsed.agent.nvml_available else 1), result.stderr
    if not parsed.agent.nvml_available:
        assert parsed.agent.message.startswith("NVML: "), parsed.agent.message


def test_once_with_a_stale_library_says_what_to_do(tmp_path: Path) -> None:
    scenario = tmp_path / "stale.yaml"
    scenario.write_text("nvml: LibRmVersionMismatch\ngpus: [{name: Tesla T4}]\n")
    result = run_once(f"--scenario={scenario}", "--once")
    assert result.returncode == 1, result.stderr
    message = json.loads(result.stdout)["agent"]["message"]
    assert "(LibRmVersionMismatch): this container's NVML library does not match" in message
    assert "exits for a new container" not in message  # --once exits anyway
    assert "kubelet" not in result.stderr
