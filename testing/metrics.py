"""Read Prometheus `/metrics`: a local process's, or kube-apiserver's, for tests and benchmarks."""

from __future__ import annotations

import ssl
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from gpu_inventory.testing.controlplane import ControlPlane

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
"""Every sample, keyed by (metric name, its labels sorted)."""


def scrape(port: int, *, timeout: float = 10) -> Samples:
    """The samples served at http://127.0.0.1:`port`/metrics (OSError if nothing listens)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as response:
        text = response.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def apiserver_requests(plane: ControlPlane, *, timeout: float = 30) -> float:
    """kube-apiserver's own count of the requests it served (`apiserver_request_total`, summed
    over every verb, resource and code), read with the admin certificate."""
    pki = plane.pki
    context = ssl.create_default_context(cafile=str(pki.ca.cert))
    context.load_cert_chain(str(pki.directory / "admin.crt"), str(pki.directory / "admin.key"))
    with urllib.request.urlopen(f"{plane.server}/metrics", timeout=timeout, context=context) as r:
        text = r.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "apiserver_request"
        for sample in family.samples
        if sample.name == "apiserver_request_total"
    )
