"""Read a process's Prometheus `/metrics`, for tests and benchmarks."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families

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
