"""`gpu-inventory-operator`: run the operator cluster-wide against any kubeconfig or in-cluster.

Several replicas are safe with `--lease-namespace` (or `POD_NAMESPACE`): all watch, only the
Lease holder writes (see `election`). Without it the process runs standalone and assumes it
is the only replica (`strategy: Recreate`). kopf's own peering is off (`standalone=True`):
the Lease does that job without a cluster-wide CRD.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys

import kopf

from gpu_inventory.operator.config import ConfigError, OperatorConfig
from gpu_inventory.operator.observing import ObservingMemories


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gpu-inventory-operator",
        description="Keep GPUInventory/cluster and every GPUNode's status.kubernetes current.",
    )
    parser.add_argument(
        "--lease-namespace",
        help="namespace of the leader-election Lease (default $POD_NAMESPACE; empty: standalone)",
    )
    parser.add_argument("--lease-name", help="name of the Lease (default gpu-inventory-operator)")
    parser.add_argument("--identity", help="holder identity (default $POD_NAME, else host-pid)")
    parser.add_argument("--standalone", action="store_true", help="no Lease: always write")
    parser.add_argument(
        "--metrics-port", type=int, help="Prometheus /metrics port (default 9090; 0 disables)"
    )
    parser.add_argument(
        "--liveness",
        metavar="URL",
        default=os.environ.get("GPU_INVENTORY_LIVENESS", "http://0.0.0.0:8080/healthz"),
        help="kopf liveness endpoint (default http://0.0.0.0:8080/healthz; '' disables)",
    )
    parser.add_argument(
        "--verbose", action="store_true", help="also log every handled event (kopf.objects INFO)"
    )
    parser.add_argument("--debug", action="store_true", help="log DEBUG")
    return parser


def build_config(args: argparse.Namespace, environ: dict[str, str] | None = None) -> OperatorConfig:
    """The environment's config with the command line's overrides applied."""
    config = OperatorConfig.from_env(os.environ if environ is None else environ)
    overrides: dict[str, object] = {}
    if args.lease_namespace is not None:
        overrides["lease_namespace"] = args.lease_namespace
    if args.lease_name:
        overrides["lease_name"] = args.lease_name
    if args.identity:
        overrides["identity"] = args.identity
    if args.standalone:
        overrides["lease_namespace"] = ""
    if args.metrics_port is not None:
        overrides["metrics_port"] = args.metrics_port
    return dataclasses.replace(config, **overrides)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = build_config(args)
    except ConfigError as error:
        print(f"gpu-inventory-operator: {error}", file=sys.stderr)
        return 2
    kopf.configure(debug=args.debug, verbose=False)
    # kopf logs "Handler ... succeeded" at INFO for every event: 100 lines a second under
    # churn. Per-object lines below WARNING (skipped pods, broken agents) only with --verbose.
    if not (args.verbose or args.debug):
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    logging.getLogger("gpu_inventory").setLevel(logging.DEBUG if args.debug else logging.INFO)
    import gpu_inventory.operator.main  # noqa: F401  (registers the handlers)

    kopf.run(
        clusterwide=True,
        standalone=True,
        liveness_endpoint=args.liveness or None,
        memo=kopf.Memo(config=config),
        memories=ObservingMemories(),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
