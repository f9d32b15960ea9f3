"""The Grafana dashboards Herd ships: one JSON in three places, real metric names only."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from e2e.testbed.dcgm_standin import DEFAULT_COUNTERS
from herd.helm.bundled import bundled_chart
from herd.operator import metrics

ROOT = Path(__file__).resolve().parent.parent
HERD_JSON = ROOT / "install" / "dashboards" / "herd.json"
_METRIC = re.compile(r"\b((?:herd|DCGM_FI|kube)_[A-Za-z0-9_]+)")


def exprs(dashboard: dict[str, object]) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p["targets"]]  # type: ignore[attr-defined, index]


def test_herd_dashboard_is_the_same_in_install_and_the_helm_chart() -> None:
    text = HERD_JSON.read_text()
    assert (ROOT / "install" / "helm" / "herd" / "dashboards" / "herd.json").read_text() == text
    configmap = yaml.safe_load((ROOT / "install" / "40-grafana-dashboard.yaml").read_text())
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["data"]["herd.json"] == text


def test_herd_dashboard_queries_metrics_herd_exports() -> None:
    exported = {
        name
        for collector in (
            metrics.OPERATIONS,
            metrics.HELM_SECONDS,
            metrics.STATUS_WRITE_FAILURES,
            metrics.STACKS,
            metrics.RELEASES,
        )
        for family in collector.collect()
        for name in {family.name, *(s.name for s in family.samples)}
    } | {"herd_operations_total", "herd_status_write_failures_total"}
    used = {m for e in exprs(json.loads(HERD_JSON.read_text())) for m in _METRIC.findall(e)}
    assert used and used <= exported | {"herd_helm_duration_seconds_bucket"}, used - exported


def test_insights_dashboards_use_dcgm_default_counters() -> None:
    chart = bundled_chart("herd-insights", "0.1.0")
    assert chart is not None
    counters = {name for name, _, _ in DEFAULT_COUNTERS}
    for path in sorted((chart / "dashboards").glob("*.json")):
        used = {m for e in exprs(json.loads(path.read_text())) for m in _METRIC.findall(e)}
        dcgm = {m for m in used if m.startswith("DCGM_FI")}
        assert dcgm <= counters, (path.name, dcgm - counters)
        assert "__NAMESPACES__" in path.read_text()
