"""Herd's dashboards and alerts for one Stack: the `herd-insights` chart and what counts. Pure.

With `observability: enabled`, each target cluster gets, beside the SUSE Observability
agent (in the agent's namespace, after it), one release of the chart Herd ships
(`herd/charts/herd-insights`, `herd.helm.bundled`):

- two Grafana dashboards as ConfigMaps labelled `grafana_dashboard: "1"` (the Grafana
  sidecar's default): GPU utilization and memory per pod (dcgm-exporter's
  `DCGM_FI_DEV_GPU_UTIL`, `DCGM_FI_DEV_FB_USED`, `DCGM_FI_DEV_FB_FREE`) and pod readiness
  and restarts (kube-state-metrics), both limited to the namespaces of the Stack's charts;
- a PrometheusRule with `HerdGpuSaturated` (above 95% for 10 minutes) and
  `HerdReleaseNotReady` (a pod not ready for 10 minutes), rendered only where the
  API server serves `monitoring.coreos.com/v1/PrometheusRule` (helm's Capabilities, at
  install or upgrade).

It is an ordinary release of the Stack's own (`insights_chart` is appended to the
Stack's charts by `herd.addons.catalog`), so it goes where the Stack goes, follows the
Stack's grants (its namespace must be granted), and is uninstalled when the Stack is
deleted or observability is disabled. `insights_counts` counts, from what was read back
from a cluster, the dashboards and alert rules that are actually there.

Callers: `herd.addons.catalog` (the chart), `herd.addons.probe` (the counts).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any, Final

from herd.api.charts import ChartSpec, ChartValues
from herd.api.v1 import Stack
from herd.helm.bundled import BUNDLED_REPO

INSIGHTS: Final = "herd-insights"
INSIGHTS_VERSION: Final = "0.1.0"
DASHBOARD_LABEL: Final = "grafana_dashboard"
_RELEASE_MAX = 53


def insights_release(stack: Stack) -> str:
    """`herd-insights-<stack>-<hash of namespace/name>`: one per Stack, within helm's 53."""
    digest = hashlib.sha256(f"{stack.namespace}/{stack.name}".encode()).hexdigest()[:6]
    room = _RELEASE_MAX - len(INSIGHTS) - len(digest) - 2
    name = stack.name[:room].rstrip("-.")
    return f"{INSIGHTS}-{name}-{digest}"


def insights_chart(stack: Stack, namespace: str, *, timeout: str = "5m") -> ChartSpec:
    """The Stack's `herd-insights` chart in `namespace` (the agent's)."""
    namespaces = sorted({c.namespace for c in stack.spec.charts})
    return ChartSpec(
        name=INSIGHTS,
        repo=BUNDLED_REPO,
        version=INSIGHTS_VERSION,
        namespace=namespace,
        release_name=insights_release(stack),
        wait=False,
        timeout=timeout,
        values=ChartValues(
            inline={
                "stack": {"name": stack.name, "namespace": stack.namespace},
                "namespaces": namespaces,
            }
        ),
    )


def insights_counts(
    configmaps: Iterable[Mapping[str, Any]], rules: Iterable[Mapping[str, Any]]
) -> tuple[int, int]:
    """(dashboards, alert rules): ConfigMaps labelled for the Grafana sidecar with at
    least one dashboard document, and `alert` rules of the PrometheusRules."""
    dashboards = sum(
        1
        for cm in configmaps
        if ((cm.get("metadata") or {}).get("labels") or {}).get(DASHBOARD_LABEL) == "1"
        and any(str(k).endswith(".json") for k in (cm.get("data") or {}))
    )
    alerts = sum(
        1
        for rule in rules
        for group in ((rule.get("spec") or {}).get("groups") or [])
        if isinstance(group, dict)
        for entry in group.get("rules") or []
        if isinstance(entry, dict) and entry.get("alert")
    )
    return dashboards, alerts
