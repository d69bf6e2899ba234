"""`python -m gpu_inventory.testing up|down|status`: the local control plane for people.

`make cluster-up` runs `up --dir .cluster`: the processes keep running in the background and
`.cluster/kubeconfig` is the admin kubeconfig; `make cluster-down` stops them by pid.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gpu_inventory.testing.controlplane import STATE_FILE, ControlPlane, alive, stop_detached
from gpu_inventory.testing.kubectl import kubectl_path


def _rss_mib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
    return 0


def up(workdir: Path, crds: bool) -> int:
    if (workdir / STATE_FILE).exists():
        print(f"a control plane is already recorded in {workdir}; run `make cluster-down` first")
        return 1
    plane = ControlPlane(workdir, detach=True).start()
    if crds:
        plane.install_crds()
    print(f"control plane up in {plane.startup_seconds:.1f}s at {plane.server}")
    for name, component in plane.components.items():
        assert component.pid is not None
        print(f"  {name:<24} pid {component.pid:<8} rss {_rss_mib(component.pid)} MiB")
    print(f"\n  export KUBECONFIG={plane.kubeconfig}\n  {kubectl_path()} get ns")
    return 0


def down(workdir: Path) -> int:
    stopped = stop_detached(workdir)
    print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    return 0


def status(workdir: Path) -> int:
    state_path = workdir / STATE_FILE
    if not state_path.exists():
        print("no control plane recorded")
        return 1
    state = json.loads(state_path.read_text())
    for name, pid in state["pids"].items():
        print(f"{name:<24} pid {pid:<8} {'running' if alive(pid) else 'gone'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpu_inventory.testing", description=__doc__)
    parser.add_argument("command", choices=("up", "down", "status"))
    parser.add_argument("--dir", type=Path, default=Path(".cluster"), help="working directory")
    parser.add_argument("--no-crds", action="store_true", help="do not install crds/")
    args = parser.parse_args(argv)
    workdir = args.dir.resolve()
    if args.command == "up":
        return up(workdir, crds=not args.no_crds)
    if args.command == "down":
        return down(workdir)
    return status(workdir)


if __name__ == "__main__":
    sys.exit(main())
