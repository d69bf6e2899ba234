"""The Helm chart as tests, `make manifests` and the e2e system use it, through real Helm.

`manifests/gpu-inventory.yaml` (the kustomize base's workloads, RBAC and policy) is rendered
from `charts/gpu-inventory` with the values in `KUSTOMIZE_BASE`, so the chart is the one source
of truth: `python -m gpu_inventory.testing.helm` writes it, and a test fails when it drifts.
"""

from __future__ import annotations

import argparse
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from gpu_inventory.testing.binaries import REPO_ROOT, ensure_tool

CHART = REPO_ROOT / "charts" / "gpu-inventory"
RELEASE = "gpu-inventory"
BASE_NAMESPACE = "gpu-inventory"
RENDERED_BASE = REPO_ROOT / "manifests" / "gpu-inventory.yaml"
KUSTOMIZE_BASE: Mapping[str, str] = {"namespace.create": "true", "managedBy": "kustomize"}
"""How the kustomize base differs from a `helm install`: it brings its namespace (with the Pod
Security labels) and says who manages it."""
IMAGE_REPOSITORY = "ghcr.io/gpu-inventory/gpu-inventory"
"""The image the kustomize base and the tests name while the chart names none (`image.repository`
is required: no image is published for users yet). `hack/publish-image.sh` pushes here by
default and then writes what it pushed into the chart's values."""
HEADER = (
    "# GENERATED from charts/gpu-inventory by `make manifests`; do not edit.\n"
    "# helm template {release} charts/gpu-inventory --namespace {namespace} {sets}\n"
)


class HelmError(RuntimeError):
    """Helm refused: the message carries its stderr."""


def helm(*args: str, kubeconfig: Path | str | None = None, timeout: float = 300) -> str:
    """Run the pinned Helm; stdout, or HelmError with stderr."""
    command = [str(ensure_tool("helm")), *args]
    if kubeconfig is not None:
        command.append(f"--kubeconfig={kubeconfig}")
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise HelmError(f"helm {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout


def _sets(values: Mapping[str, str]) -> list[str]:
    return [f"--set={key}={value}" for key, value in sorted(values.items())]


def with_image(values: Mapping[str, str] | None = None) -> dict[str, str]:
    """`values` plus an image repository: the chart's own if it names one, else
    IMAGE_REPOSITORY."""
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    return {
        "image.repository": defaults["image"]["repository"] or IMAGE_REPOSITORY,
        **(values or {}),
    }


def template(
    namespace: str,
    values: Mapping[str, str] | None = None,
    *,
    extra: Sequence[str] = (),
    release: str = RELEASE,
) -> str:
    """`helm template` of the chart as `release` (default `gpu-inventory`) in `namespace`, with
    an image (`with_image`)."""
    return helm(
        "template",
        release,
        str(CHART),
        f"--namespace={namespace}",
        *_sets(with_image(values)),
        *extra,
    )


def objects(rendered: str) -> list[dict[str, Any]]:
    """The objects of a multi-document YAML stream (empty documents dropped)."""
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


def render_kustomize_base() -> str:
    """What `manifests/gpu-inventory.yaml` must contain."""
    sets = " ".join(_sets(with_image(KUSTOMIZE_BASE)))
    header = HEADER.format(release=RELEASE, namespace=BASE_NAMESPACE, sets=sets)
    return header + template(BASE_NAMESPACE, KUSTOMIZE_BASE)


def install(kubeconfig: Path | str, namespace: str, values: Mapping[str, str] | None = None) -> str:
    """`helm install` the chart into `namespace` (which must exist: see the README for its
    Pod Security labels). No `--wait`: the local control plane runs no kubelet."""
    return helm(
        "install",
        RELEASE,
        str(CHART),
        f"--namespace={namespace}",
        *_sets(with_image(values)),
        kubeconfig=kubeconfig,
    )


def uninstall(kubeconfig: Path | str, namespace: str) -> str:
    return helm("uninstall", RELEASE, f"--namespace={namespace}", "--wait", kubeconfig=kubeconfig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if manifests/ is not what the chart renders"
    )
    args = parser.parse_args()
    rendered = render_kustomize_base()
    if args.check:
        current = RENDERED_BASE.read_text() if RENDERED_BASE.exists() else ""
        raise SystemExit(0 if current == rendered else f"{RENDERED_BASE} is out of date")
    RENDERED_BASE.write_text(rendered)
    print(f"wrote {RENDERED_BASE.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()
