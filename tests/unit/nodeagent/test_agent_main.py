"""The command line, its options, and /healthz."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from gpu_inventory.nodeagent.config import ConfigError
from gpu_inventory.nodeagent.healthz import HealthServer, Liveness
from gpu_inventory.nodeagent.main import agent_config, main, parser
from gpu_inventory.testing.simagent import main as simagent


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "NODE_NAME",
        "POD_NAME",
        "GPU_INVENTORY_BACKEND",
        "GPU_INVENTORY_SCENARIO",
        "KUBECONFIG",
        "KUBERNETES_SERVICE_HOST",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("clean_env")
def test_a_missing_node_name_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "NODE_NAME is not set" in capsys.readouterr().err


@pytest.mark.usefixtures("clean_env")
def test_the_retired_fake_backend_is_refused_with_what_to_run_instead(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NODE_NAME", "n1")
    monkeypatch.setenv("GPU_INVENTORY_BACKEND", "fake")
    assert main([]) == 2
    assert "python -m gpu_inventory.testing.simagent --scenario NAME" in capsys.readouterr().err


@pytest.mark.usefixtures("clean_env")
def test_an_unknown_scenario_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NODE_NAME", "n1")
    assert simagent(["--scenario=h200-dreams"]) == 2
    err = capsys.readouterr().err
    assert "scenario 'h200-dreams'" in err
    assert "t4-single" in err  # names the shipped ones


@pytest.mark.usefixtures("clean_env")
def test_missing_kubernetes_credentials_are_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("NODE_NAME", "n1")
    code = main([f"--kubeconfig={tmp_path / 'missing'}"])
    assert code == 2
    assert "cannot load Kubernetes credentials" in capsys.readouterr().err


@pytest.mark.usefixtures("clean_env")
def test_a_bad_pacing_option_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NODE_NAME", "n1")
    assert main(["--write-floor=30", "--heartbeat=10"]) == 2
    assert "--heartbeat (10.0 s) must not be shorter than --write-floor" in (
        capsys.readouterr().err
    )


@pytest.mark.usefixtures("clean_env")
@pytest.mark.parametrize(
    ("flag", "said"),
    [
        ("--interval=0", "--interval must be > 0 s, got 0.0"),
        ("--node-poll=-1", "--node-poll must be > 0 s, got -1.0"),
        ("--nvml-retry=0", "--nvml-retry must be > 0 s"),
        ("--xid-window=0", "--xid-window must be > 0 s"),
        ("--health-port=70000", "--health-port must be 0..65535"),
        ("--retry-initial=500", "--retry-initial (500.0) <= --retry-max (300.0)"),
    ],
)
def test_a_bad_option_is_named_as_the_user_wrote_it(
    flag: str, said: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NODE_NAME", "n1")
    assert main([flag]) == 2
    assert said in capsys.readouterr().err


def test_flags_win_over_the_environment() -> None:
    env = {"NODE_NAME": "from-env", "POD_NAME": "pod-env"}
    from_env = agent_config(parser().parse_args([]), env)
    assert (from_env.node_name, from_env.pod_name) == ("from-env", "pod-env")
    flags = parser().parse_args(
        [
            "--node-name=n2",
            "--write-floor=1",
            "--heartbeat=2",
            "--memory-deadband-mib=64",
            "--temperature-deadband=2",
            "--xid-window=600",
            "--health-port=0",
            "--node-poll=30",
        ]
    )
    cfg = agent_config(flags, env)
    assert cfg.node_name == "n2"
    assert cfg.node_poll_seconds == 30
    assert cfg.report.write_floor_seconds == 1
    assert cfg.report.heartbeat_seconds == 2
    assert cfg.report.memory_deadband_bytes == 64 << 20
    assert cfg.report.temperature_deadband_celsius == 2
    assert cfg.health.xid_window_seconds == 600
    assert cfg.health_port == 0


def test_nvml_is_the_only_backend() -> None:
    assert agent_config(
        parser().parse_args([]), {"NODE_NAME": "n", "GPU_INVENTORY_BACKEND": "nvml"}
    )
    with pytest.raises(ConfigError, match="the agent reads NVML only"):
        agent_config(parser().parse_args([]), {"NODE_NAME": "n", "GPU_INVENTORY_BACKEND": "x"})


def test_python_dash_m_runs_the_same_entry_point() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gpu_inventory.nodeagent", "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONSAFEPATH": "1"},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "--once" in result.stdout


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_healthz_is_200_while_the_loop_turns_and_503_once_it_stalls() -> None:
    clock = FakeMonotonic()
    liveness = Liveness(stale_after=60, clock=clock)
    server = HealthServer(liveness, host="127.0.0.1", port=0)
    port = server.start()
    try:
        assert port != 0
        assert get(port, "/healthz") == (200, "ok\n")
        clock.now += 61
        assert get(port, "/healthz") == (503, "the agent's loop has stalled\n")
        liveness.beat()
        assert get(port, "/healthz")[0] == 200
        assert get(port, "/metrics")[0] == 404
    finally:
        server.stop()
