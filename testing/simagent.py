"""The real node agent on a simulated node: `python -m gpu_inventory.testing.simagent`.

    python -m gpu_inventory.testing.simagent --scenario NAME|PATH [agent options ...]

Loads a scenario (`scenario.py`; shipped: `t4-single`, `h100-8x-mig`, `h100-8x-events`,
`no-driver`, `too-many-gpus`), installs its `SimulatedNVML` into `pynvml`, and runs the agent's
normal `main` with every other option (`--once`, `--health-port`, ...). The scenario may also
come from $GPU_INVENTORY_SCENARIO; its timeline starts when this process starts. GPU UUIDs are
derived from the node name ($NODE_NAME or --node-name), so each simulated node has its own.

It imports nothing the agent itself does not (no Kubernetes client here), so `--once` runs on a
machine with only nvidia-ml-py, pydantic and PyYAML. Used by the demo, the e2e suite and the
kind path; the agent itself never imports this package.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from gpu_inventory.nodeagent.main import main as agent_main
from gpu_inventory.testing.scenario import ScenarioError, load_scenario, simulate


def main(argv: Sequence[str] | None = None) -> int:
    own = argparse.ArgumentParser(
        prog="python -m gpu_inventory.testing.simagent",
        description="Run gpu-inventory-agent over a simulated NVML driven by a scenario file.",
        add_help=False,
    )
    own.add_argument("--scenario", default=os.environ.get("GPU_INVENTORY_SCENARIO", ""))
    own.add_argument("--node-name", default=os.environ.get("NODE_NAME", ""))
    args, rest = own.parse_known_args(argv)
    if "-h" in rest or "--help" in rest:
        own.print_usage()
        print("  --scenario NAME|PATH  (or $GPU_INVENTORY_SCENARIO); agent options follow:")
        return agent_main(["--help"])
    if not args.scenario:
        print(
            f"{own.prog}: --scenario NAME|PATH (or $GPU_INVENTORY_SCENARIO) is required",
            file=sys.stderr,
        )
        return 2
    try:
        name, scenario = load_scenario(args.scenario)
    except ScenarioError as error:
        print(f"{own.prog}: {error}", file=sys.stderr)
        return 2
    timeline = simulate(scenario, seed=args.node_name or "node")
    timeline.sim.install()
    print(f"simulated NVML: scenario {name}: {scenario.description}", file=sys.stderr)
    if args.node_name:
        rest = ["--node-name", args.node_name, *rest]
    return agent_main(rest)


if __name__ == "__main__":
    raise SystemExit(main())
