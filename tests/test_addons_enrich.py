"""Add-on status as tables: `enrich` fills the security and observability sections,
their conditions and the row fields from scans and agent health; `carry_over` keeps
them during a rollout. Images, verdicts and summaries are `tests/test_addons_status.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from herd.api import ChartSpec, Condition, StackSpec, StackStatus
from herd.plan.clusters import Cluster, KubeconfigRef
from herd.plan.desired import StackPlan, plan_stack
from herd.plan.releases import ReleaseKey
from herd.plan.results import ReleaseResult, State
from herd.status.addons import OBSERVABILITY_CONFIGURED, SECURITY_SCANNED, carry_over, enrich
from herd.status.build import stack_status
from herd.status.facts import (
    AGENT,
    NEUVECTOR,
    AgentHealth,
    ClusterScan,
    FailOn,
)
from tests.test_addons_status import APP, CRITICAL, HIGH, NV

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
LATER = datetime(2025, 1, 2, 4, 0, 0, tzinfo=UTC)


def cluster(cluster_id: str) -> Cluster:
    return Cluster(
        id=cluster_id,
        name=f"name-{cluster_id}",
        labels={},
        ready=True,
        source="file",
        kubeconfig=KubeconfigRef.file(Path("/dev/null")),
    )


@dataclass
class Result:
    """A StackResult stand-in (enrich only reads plan, targets and releases)."""

    plan: StackPlan | None
    targets: list[Cluster]
    releases: list[ReleaseResult] = field(default_factory=list)


def addon_chart(name: str, namespace: str) -> ChartSpec:
    return ChartSpec(name=name, repo="https://addons", version="1.0.0", namespace=namespace)


def make_result(
    security: bool, observability: bool, states: dict[tuple[str, str], State]
) -> Result:
    spec = StackSpec.model_validate(
        {
            "security": security,
            "observability": observability,
            "targets": {"clusterIds": ["c1", "c2"]},
            "charts": [{"name": "app", "repo": "https://r", "version": "1", "namespace": "ns"}],
        }
    )
    addons = []
    if security:
        addons.append(addon_chart(NEUVECTOR, "nv"))
    if observability:
        addons.append(addon_chart(AGENT, "obs"))
    plan = plan_stack(spec, addons=addons)
    namespaces = {NEUVECTOR: "nv", AGENT: "obs", "app": "ns"}
    releases = [
        ReleaseResult(
            ReleaseKey(cluster_id, namespaces[chart], chart),
            chart,
            state,
            revision=1,
            updated=NOW,
        )
        for (cluster_id, chart), state in states.items()
    ]
    return Result(plan, [cluster("c1"), cluster("c2")], releases)


def base_status(result: Result, previous: StackStatus | None = None) -> StackStatus:
    return stack_status(
        result.releases,
        targets=[c.id for c in result.targets],
        skipped=[],
        chart_count=3,
        generation=4,
        now=NOW,
        previous=previous,
    )


ALL_DEPLOYED = {
    (c, chart): State.DEPLOYED for c in ("c1", "c2") for chart in (NEUVECTOR, AGENT, "app")
}
SCANS = {
    c: ClusterScan(
        c, {("ns", "app"): frozenset({APP}), ("nv", NEUVECTOR): frozenset({NV})}, report=CRITICAL
    )
    for c in ("c1", "c2")
}
AGENTS = {"c1": AgentHealth("c1", True), "c2": AgentHealth("c2", False, "not ready: Deployment")}


def by_key(status: StackStatus) -> dict[tuple[str, str], tuple[str | None, str | None]]:
    return {
        (r.cluster_id, r.chart_name): (r.security_scan, r.observability_metrics)
        for r in status.deployments
    }


def condition(status: StackStatus, kind: str) -> Condition:
    return next(c for c in status.conditions if c.type == kind)


def test_enrich_fills_sections_conditions_and_rows() -> None:
    result = make_result(True, True, ALL_DEPLOYED)
    status = enrich(base_status(result), result, SCANS, AGENTS, now=NOW)
    assert status.security is not None and status.observability is not None
    assert status.security.model_dump() == {
        "neu_vector_enabled": True,
        "scan_status": "Completed",
        "vulnerabilities": 6,
        "critical_issues": 1,
    }
    assert status.observability.model_dump() == {
        "suse_observability_enabled": True,
        "agents_deployed": 2,
        "agents_total": 2,
        "metrics_collected": False,
        "dashboards_available": 0,
        "alerts_configured": 0,
    }
    scanned = condition(status, SECURITY_SCANNED)
    assert (scanned.status, scanned.reason) == ("True", "CriticalVulnerabilitiesFound")
    assert scanned.observed_generation == 4
    assert scanned.last_transition_time == "2025-01-02T03:04:05Z"
    configured = condition(status, OBSERVABILITY_CONFIGURED)
    assert (configured.status, configured.reason) == ("False", "AgentsNotReady")
    assert by_key(status) == {
        ("c1", NEUVECTOR): ("Passed", "Active"),
        ("c1", AGENT): ("Pending", "Active"),  # its images are not in the scans
        ("c1", "app"): ("Failed", "Active"),
        ("c2", NEUVECTOR): ("Passed", "NotReady"),
        ("c2", AGENT): ("Pending", "NotReady"),
        ("c2", "app"): ("Failed", "NotReady"),
    }
    assert [c.type for c in status.conditions][:3] == ["Ready", "Reconciling", "Stalled"]


def test_enrich_rows_that_are_not_deployed_are_pending() -> None:
    states = {**ALL_DEPLOYED, ("c2", AGENT): State.FAILED, ("c2", "app"): State.SKIPPED}
    result = make_result(True, True, states)
    status = enrich(base_status(result), result, SCANS, AGENTS, now=NOW)
    rows = by_key(status)
    assert rows[("c2", "app")] == ("Pending", "Pending")
    assert rows[("c2", NEUVECTOR)] == ("Passed", "Pending")
    assert status.observability is not None and status.observability.agents_deployed == 1
    assert condition(status, OBSERVABILITY_CONFIGURED).reason == "AgentsNotDeployed"


def test_enrich_without_observations_is_pending() -> None:
    result = make_result(True, True, ALL_DEPLOYED)
    status = enrich(base_status(result), result, {}, {}, now=NOW)
    assert status.security is not None and status.security.scan_status == "Pending"
    assert condition(status, SECURITY_SCANNED).reason == "ScanPending"
    assert set(by_key(status).values()) == {("Pending", "Pending")}


def test_enrich_fail_on_high() -> None:
    result = make_result(
        True, False, {("c1", NEUVECTOR): State.DEPLOYED, ("c1", "app"): State.DEPLOYED}
    )
    scans = {"c1": ClusterScan("c1", {("ns", "app"): frozenset({APP})}, report=HIGH)}
    critical_only = enrich(base_status(result), result, scans, {}, now=NOW)
    strict = enrich(base_status(result), result, scans, {}, fail_on=FailOn.HIGH, now=NOW)
    assert by_key(critical_only)[("c1", "app")][0] == "Passed"
    assert by_key(strict)[("c1", "app")][0] == "Failed"


def test_disabled_addons_leave_no_trace_even_when_the_previous_status_had_them() -> None:
    enabled = make_result(True, True, ALL_DEPLOYED)
    before = enrich(base_status(enabled), enabled, SCANS, AGENTS, now=NOW)
    disabled = make_result(False, False, {("c1", "app"): State.DEPLOYED})
    status = enrich(
        base_status(disabled, previous=before), disabled, SCANS, AGENTS, previous=before
    )
    assert status.security is None and status.observability is None
    assert [c.type for c in status.conditions] == ["Ready", "Reconciling", "Stalled"]
    assert set(by_key(status).values()) == {(None, None)}


def test_enrich_keeps_transition_times_while_a_condition_holds() -> None:
    result = make_result(True, True, ALL_DEPLOYED)
    first = enrich(base_status(result), result, SCANS, AGENTS, now=NOW)
    ready = {c: AgentHealth(c, True) for c in ("c1", "c2")}
    second = enrich(base_status(result, first), result, SCANS, ready, previous=first, now=LATER)
    assert condition(second, SECURITY_SCANNED).last_transition_time == "2025-01-02T03:04:05Z"
    flipped = condition(second, OBSERVABILITY_CONFIGURED)
    assert (flipped.status, flipped.last_transition_time) == ("True", "2025-01-02T04:00:00Z")


def test_enrich_leaves_a_deletion_alone() -> None:
    result = make_result(True, True, ALL_DEPLOYED)
    status = base_status(result)
    assert enrich(status, Result(None, [], []), SCANS, AGENTS) is status


def test_carry_over_keeps_addon_conditions_and_row_fields_during_a_rollout() -> None:
    result = make_result(True, True, ALL_DEPLOYED)
    finished = enrich(base_status(result), result, SCANS, AGENTS, now=NOW)
    busy = {**ALL_DEPLOYED, ("c1", "app"): State.DEPLOYING}
    running = make_result(True, True, busy)
    during = carry_over(base_status(running, finished), finished)
    assert condition(during, SECURITY_SCANNED) == condition(finished, SECURITY_SCANNED)
    assert by_key(during)[("c1", "app")] == ("Failed", "Active")
    assert during.security == finished.security  # stack_status keeps the sections itself
    assert carry_over(finished, None) is finished
