"""The chart's alert rules, evaluated by Prometheus' own `promtool test rules`.

The rules come out of the chart's PrometheusRule (the one place they are written), and series
are either written by hand or recorded from the real operator's /metrics (`testing.metrics`).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from gpu_inventory.testing import helm
from gpu_inventory.testing.binaries import ensure_tool
from gpu_inventory.testing.metrics import Samples

RULE_VALUES = {"metrics.prometheusRule.enabled": "true"}


def rule_groups(values: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """`spec.groups` of the chart's PrometheusRule."""
    rendered = helm.template(
        "gpu-inventory",
        {**RULE_VALUES, **(values or {})},
        extra=("--show-only=templates/prometheusrule.yaml",),
    )
    (rule,) = helm.objects(rendered)
    groups: list[dict[str, Any]] = rule["spec"]["groups"]
    return groups


def alert_names() -> list[str]:
    return [r["alert"] for group in rule_groups() for r in group["rules"] if "alert" in r]


def write_rules(directory: Path) -> Path:
    path = directory / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule_groups()}, sort_keys=False))
    return path


def series_name(name: str, labels: Iterable[tuple[str, str]]) -> str:
    """`name{a="x",b="y"}` in PromQL's series notation."""
    pairs = ",".join(
        f'{key}="{value.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for key, value in labels
    )
    return f"{name}{{{pairs}}}" if pairs else name


def held(samples: Samples, steps: int, *, skip: Sequence[str] = ()) -> list[dict[str, str]]:
    """Recorded samples as input series that keep their value for `steps` more samples."""
    return [
        {"series": series_name(name, labels), "values": f"{value:g}x{steps}"}
        for (name, labels), value in sorted(samples.items())
        if name.startswith("gpu_inventory_") and name not in skip
    ]


def promtool_test(
    directory: Path, rules: Path, tests: list[dict[str, Any]]
) -> subprocess.CompletedProcess[str]:
    """`promtool test rules` on `tests` (a list of promtool test groups)."""
    test_file = directory / "alerts.test.yaml"
    test_file.write_text(
        yaml.safe_dump(
            {"rule_files": [rules.name], "evaluation_interval": "1m", "tests": tests},
            sort_keys=False,
        )
    )
    return subprocess.run(
        [str(ensure_tool("promtool")), "test", "rules", test_file.name],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def promtool_check(rules: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ensure_tool("promtool")), "check", "rules", str(rules)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
