"""Herd's dashboards and alerts: the Stack's chart, its release name, counts, grants."""

from __future__ import annotations

from typing import Any

from herd.addons.catalog import AddonCatalog
from herd.addons.insights import (
    INSIGHTS,
    INSIGHTS_VERSION,
    insights_chart,
    insights_counts,
    insights_release,
)
from herd.api import parse_stack
from herd.api.v1 import Stack
from herd.helm.bundled import BUNDLED_REPO, bundled_chart
from herd.plan.desired import plan_stack
from herd.plan.tenancy import addon_namespace_problems, grants_for

SECRET = {"stackstate.url": "https://sts.example.com/receiver", "stackstate.apiKey": "k"}


def stack(name: str = "ai", namespace: str = "team-a", observability: str = "enabled") -> Stack:
    return parse_stack(
        {
            "apiVersion": "herd.suse.com/v1",
            "kind": "Stack",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "observability": observability,
                "targets": {"clusterIds": ["c1"]},
                "charts": [
                    {"name": "ollama", "repo": "https://r", "version": "1", "namespace": "ai"},
                    {"name": "qdrant", "repo": "https://r", "version": "1", "namespace": "db"},
                ],
            },
        }
    )


def test_release_name_is_per_stack_and_fits_helm() -> None:
    assert insights_release(stack()) != insights_release(stack(namespace="team-b"))
    assert insights_release(stack()).startswith("herd-insights-ai-")
    long = insights_release(stack(name="a" * 63))
    assert len(long) <= 53 and long.startswith("herd-insights-aaa")


def test_chart_is_bundled_and_names_the_stack_namespaces() -> None:
    chart = insights_chart(stack(), "suse-observability")
    assert (chart.repo, chart.chart_name, chart.version) == (BUNDLED_REPO, INSIGHTS, "0.1.0")
    assert chart.namespace == "suse-observability" and not chart.wait
    assert chart.values.inline == {
        "stack": {"name": "ai", "namespace": "team-a"},
        "namespaces": ["ai", "db"],
    }
    directory = bundled_chart(INSIGHTS, INSIGHTS_VERSION)
    assert directory is not None and (directory / "templates" / "prometheusrule.yaml").is_file()
    assert bundled_chart(INSIGHTS, "9.9.9") is None
    assert bundled_chart("../herd-insights", INSIGHTS_VERSION) is None


def test_catalog_appends_it_only_with_observability_and_after_the_agent() -> None:
    catalog = AddonCatalog.from_config({}, SECRET)
    assert catalog.stack_charts(stack(observability="disabled")) == []
    own = catalog.stack_charts(stack())
    assert [c.name for c in own] == [INSIGHTS]
    spec = stack().spec
    plan = plan_stack(
        spec.model_copy(update={"charts": [*spec.charts, *own]}),
        addons=catalog.charts(spec),
    )
    assert plan.waves[0] == ("suse-observability-agent",)
    assert INSIGHTS in plan.waves[1]
    assert INSIGHTS not in plan.shared  # the Stack's own: its deletion removes it


def test_grants_apply_to_its_namespace() -> None:
    chart = insights_chart(stack(), "suse-observability")
    assert addon_namespace_problems(None, [chart]) == []
    bounded = grants_for("team-a", [], admin_namespace="herd-system")
    problems = addon_namespace_problems(bounded, [chart])
    assert [p.field for p in problems] == ["spec.observability"]
    assert "'suse-observability'" in problems[0].message


def configmap(labels: dict[str, str], data: dict[str, str]) -> dict[str, Any]:
    return {"metadata": {"labels": labels}, "data": data}


def test_counts_are_what_is_there() -> None:
    dashboards = [
        configmap({"grafana_dashboard": "1"}, {"gpu-per-pod.json": "{}"}),
        configmap({"grafana_dashboard": "1"}, {"release-health.json": "{}"}),
        configmap({"grafana_dashboard": "0"}, {"x.json": "{}"}),
        configmap({"grafana_dashboard": "1"}, {"notes.txt": ""}),
    ]
    rule = {
        "spec": {
            "groups": [
                {"rules": [{"alert": "HerdGpuSaturated"}, {"record": "x"}]},
                {"rules": [{"alert": "HerdReleaseNotReady"}]},
            ]
        }
    }
    assert insights_counts(dashboards, [rule]) == (2, 2)
    assert insights_counts([], []) == (0, 0)


async def test_the_catalog_names_every_addon_namespace_for_the_grants() -> None:
    defaults = {"suse-observability", "cattle-neuvector-system"}
    assert await AddonCatalog.from_config({}, SECRET).namespaces() == defaults
    moved = AddonCatalog.from_config({"observability.namespace": "monitoring"}, SECRET)
    assert await moved.namespaces() == {*defaults, "monitoring"}
    # The dashboards go where the catalog says, so a granted tenant's grants know it.
    grants = grants_for(
        "team-a", [], admin_namespace="herd-system", addon_namespaces=await moved.namespaces()
    )
    chart = moved.stack_charts(stack())[0]
    assert chart.namespace == "monitoring" and chart.namespace in grants.addon_namespaces
