"""Add-on status as tables: images in manifests, scan verdicts, summaries, enrich."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from herd.addons.images import Workload, manifest_facts, normalize
from herd.addons.probe import workload_ready
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
    ImageScan,
    ScanReport,
    ScanState,
)
from herd.status.observability import observability_summary, row_metrics
from herd.status.security import Verdict, cluster_state, release_verdict, security_summary

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
LATER = datetime(2025, 1, 2, 4, 0, 0, tzinfo=UTC)
APP = "registry.example.com/herd/app:0.1.0"
NV = "registry.example.com/neuvector/controller:5.4.4"
AGENT_IMAGE = "registry.example.com/stackstate/agent:3.0.0"

# -- images --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "normalized"),
    [
        ("nginx", "docker.io/library/nginx:latest"),
        ("nginx:1.25", "docker.io/library/nginx:1.25"),
        ("bitnami/redis:7", "docker.io/bitnami/redis:7"),
        ("docker.io/library/nginx:1.25", "docker.io/library/nginx:1.25"),
        ("index.docker.io/library/nginx:1.25", "docker.io/library/nginx:1.25"),
        ("quay.io/org/img", "quay.io/org/img:latest"),
        ("localhost:5000/img:1", "localhost:5000/img:1"),
        ("registry:5000/a/b:2", "registry:5000/a/b:2"),
        ("nginx@sha256:abc", "docker.io/library/nginx@sha256:abc"),
        ("ghcr.io/a/b:1@sha256:abc", "ghcr.io/a/b:1@sha256:abc"),
        (" nginx:1 ", "docker.io/library/nginx:1"),
    ],
)
def test_normalize(image: str, normalized: str) -> None:
    assert normalize(image) == normalized


MANIFEST = """
---
# Source: app/templates/deployment.yaml
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  template:
    spec:
      initContainers: [{name: init, image: "busybox:1.36"}]
      containers: [{name: app, image: "registry.example.com/herd/app:0.1.0"}, {name: x}]
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly, namespace: jobs}
spec:
  jobTemplate:
    spec:
      template:
        spec:
          containers: [{name: job, image: "alpine"}]
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: node-agent, namespace: other}
spec: {template: {spec: {containers: [{name: a, image: "registry.example.com/herd/app:0.1.0"}]}}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg}
data: {image: "not-an-image"}
---
"""


def test_manifest_facts_find_images_and_workloads() -> None:
    facts = manifest_facts(MANIFEST, "ns")
    assert facts.images == {
        "docker.io/library/busybox:1.36",
        APP,
        "docker.io/library/alpine:latest",
    }
    assert facts.workloads == (
        Workload("DaemonSet", "other", "node-agent"),
        Workload("Deployment", "ns", "web"),
    )


def test_manifest_facts_of_nothing_or_garbage() -> None:
    assert manifest_facts("", "ns").images == frozenset()
    assert manifest_facts("a: [1", "ns").workloads == ()


# -- security ------------------------------------------------------------------------------


def scan(report: ScanReport | None = None, **releases: frozenset[str]) -> ClusterScan:
    return ClusterScan(
        "c1", {("ns", name): images for name, images in releases.items()}, report=report
    )


CLEAN = ScanReport({APP: ImageScan(0, 0, 2), NV: ImageScan()})
CRITICAL = ScanReport({APP: ImageScan(1, 2, 3), NV: ImageScan()})
HIGH = ScanReport({APP: ImageScan(0, 4, 0)})


@pytest.mark.parametrize(
    ("images", "report", "fail_on", "verdict"),
    [
        (frozenset({APP}), CLEAN, FailOn.CRITICAL, Verdict.PASSED),
        (frozenset({APP}), CRITICAL, FailOn.CRITICAL, Verdict.FAILED),
        (frozenset({APP}), HIGH, FailOn.CRITICAL, Verdict.PASSED),
        (frozenset({APP}), HIGH, FailOn.HIGH, Verdict.FAILED),
        (frozenset({APP, "docker.io/x/y:1"}), CLEAN, FailOn.CRITICAL, Verdict.PENDING),
        # One failing image fails the release even while another is unscanned.
        (frozenset({APP, "docker.io/x/y:1"}), CRITICAL, FailOn.CRITICAL, Verdict.FAILED),
        (frozenset(), CLEAN, FailOn.CRITICAL, Verdict.PASSED),  # nothing to scan
        (None, CLEAN, FailOn.CRITICAL, Verdict.PENDING),  # images unknown
        (frozenset({APP}), None, FailOn.CRITICAL, Verdict.PENDING),  # no report
    ],
)
def test_release_verdict(
    images: frozenset[str] | None, report: ScanReport | None, fail_on: FailOn, verdict: Verdict
) -> None:
    assert release_verdict(images, scan(report), fail_on) is verdict


@pytest.mark.parametrize(
    ("cluster_scan", "state"),
    [
        (scan(CLEAN, app=frozenset({APP})), ScanState.COMPLETED),
        (scan(ScanReport({}, in_progress=2), app=frozenset({APP})), ScanState.SCANNING),
        (scan(ScanReport({}), app=frozenset({APP})), ScanState.PENDING),
        (scan(ScanReport({})), ScanState.COMPLETED),  # no images at all
        (scan(None, app=frozenset({APP})), ScanState.PENDING),
        (ClusterScan("c1", state=ScanState.UNAVAILABLE, problem="HTTP 503"), ScanState.UNAVAILABLE),
    ],
)
def test_cluster_state(cluster_scan: ClusterScan, state: ScanState) -> None:
    assert cluster_state(cluster_scan) is state


def test_security_summary_counts_each_image_once_and_keeps_its_worst_scan() -> None:
    scans = [
        ClusterScan("c1", {("ns", "app"): frozenset({APP})}, report=CRITICAL),
        ClusterScan("c2", {("ns", "app"): frozenset({APP, NV})}, report=CLEAN),
    ]
    summary = security_summary(scans)
    assert summary.status.model_dump() == {
        "neu_vector_enabled": True,
        "scan_status": "Completed",
        "vulnerabilities": 6,
        "critical_issues": 1,
    }
    assert (summary.condition, summary.reason) == ("True", "CriticalVulnerabilitiesFound")
    assert summary.message == "2 images scanned on 2 clusters: 6 vulnerabilities, 1 critical"


@pytest.mark.parametrize(
    ("states", "scan_status", "reason", "message"),
    [
        ([], "Pending", "NoTargets", "No target cluster to scan"),
        (
            ["clean", "clean"],
            "Completed",
            "ScanCompleted",
            "2 images scanned on 2 clusters: 2 vulnerabilities, 0 critical",
        ),
        (
            ["clean", "unavailable", "scanning"],
            "Unavailable",
            "NeuVectorUnavailable",
            "1 of 3 clusters scanned (2 vulnerabilities, 0 critical so far); unavailable on 1, "
            "first c2: NeuVector unavailable: HTTP 503",
        ),
        (
            ["scanning", "pending", "clean"],
            "Scanning",
            "Scanning",
            "1 of 3 clusters scanned (2 vulnerabilities, 0 critical so far); scanning on 1, "
            "first c1: NeuVector is scanning",
        ),
        (
            ["deploying", "clean"],
            "Pending",
            "ScanPending",
            "1 of 2 clusters scanned (2 vulnerabilities, 0 critical so far); pending on 1, "
            "first c1: NeuVector release deploying",
        ),
    ],
)
def test_security_summary_follows_the_worst_cluster(
    states: list[str], scan_status: str, reason: str, message: str
) -> None:
    images = {("ns", "app"): frozenset({APP}), ("nv", "neuvector"): frozenset({NV})}
    make = {
        "clean": lambda c: ClusterScan(c, images, report=CLEAN),
        "scanning": lambda c: ClusterScan(c, images, report=ScanReport({}, in_progress=1)),
        "pending": lambda c: ClusterScan(c, images, report=ScanReport({})),
        "unavailable": lambda c: ClusterScan(c, state=ScanState.UNAVAILABLE, problem="HTTP 503"),
        "deploying": lambda c: ClusterScan(
            c, state=ScanState.PENDING, problem="NeuVector release deploying"
        ),
    }
    summary = security_summary([make[s](f"c{i + 1}") for i, s in enumerate(states)])
    assert (summary.status.scan_status, summary.reason, summary.message) == (
        scan_status,
        reason,
        message,
    )
    assert summary.condition == ("True" if scan_status == "Completed" else "False")


# -- observability -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rows", "agents", "expected"),
    [
        (
            {"c1": ("Deployed", ""), "c2": ("Deployed", "")},
            {"c1": True, "c2": True},
            ("True", "AgentsReady", "Agent ready on 2 of 2 clusters", 2, True),
        ),
        (
            {"c1": ("Deployed", ""), "c2": ("Failed", "timed out waiting")},
            {"c1": True},
            (
                "False",
                "AgentsNotDeployed",
                "Agent deployed on 1 of 2 clusters; first missing c2: failed (timed out waiting)",
                1,
                False,
            ),
        ),
        (
            {"c1": ("Deployed", ""), "c2": ("Deploying", "")},
            {"c1": True},
            (
                "False",
                "AgentsDeploying",
                "Agent deployed on 1 of 2 clusters; first missing c2: deploying",
                1,
                False,
            ),
        ),
        (
            {"c1": ("Deployed", "")},
            {"c1": True},
            (
                "False",
                "AgentsNotDeployed",
                "Agent deployed on 1 of 2 clusters; first missing c2: notplanned",
                1,
                False,
            ),
        ),
        (
            {"c1": ("Deployed", ""), "c2": ("Deployed", "")},
            {"c1": True, "c2": False},
            (
                "False",
                "AgentsNotReady",
                "Agent deployed on 2 of 2 clusters, not ready on 1; first c2: not ready: x",
                2,
                False,
            ),
        ),
    ],
)
def test_observability_summary(
    rows: dict[str, tuple[str, str]], agents: dict[str, bool], expected: tuple[Any, ...]
) -> None:
    health = {
        c: AgentHealth(c, ready, "" if ready else "not ready: x") for c, ready in agents.items()
    }
    summary = observability_summary(["c1", "c2"], rows, health)
    condition, reason, message, deployed, collected = expected
    assert (summary.condition, summary.reason, summary.message) == (condition, reason, message)
    assert summary.status.agents_deployed == deployed
    assert summary.status.agents_total == 2
    assert summary.status.metrics_collected is collected


def test_observability_summary_without_targets() -> None:
    summary = observability_summary([], {}, {})
    assert (summary.condition, summary.reason) == ("False", "NoTargets")
    assert not summary.status.metrics_collected


@pytest.mark.parametrize(
    ("deployed", "health", "metrics"),
    [
        (True, AgentHealth("c", True), "Active"),
        (True, AgentHealth("c", False, "x"), "NotReady"),
        (True, None, "Pending"),
        (False, AgentHealth("c", True), "Pending"),
    ],
)
def test_row_metrics(deployed: bool, health: AgentHealth | None, metrics: str) -> None:
    assert row_metrics(deployed, health).value == metrics


@pytest.mark.parametrize(
    ("kind", "body", "ready"),
    [
        ("Deployment", {"status": {"conditions": [{"type": "Available", "status": "True"}]}}, True),
        (
            "Deployment",
            {"status": {"conditions": [{"type": "Available", "status": "False"}]}},
            False,
        ),
        ("Deployment", {}, False),
        ("StatefulSet", {"spec": {"replicas": 2}, "status": {"readyReplicas": 2}}, True),
        ("StatefulSet", {"spec": {"replicas": 2}, "status": {"readyReplicas": 1}}, False),
        ("DaemonSet", {"status": {"desiredNumberScheduled": 3, "numberReady": 3}}, True),
        ("DaemonSet", {"status": {"desiredNumberScheduled": 3, "numberReady": 2}}, False),
        ("Job", {}, False),
    ],
)
def test_workload_ready(kind: str, body: dict[str, Any], ready: bool) -> None:
    assert workload_ready(kind, body) is ready


# -- enrich --------------------------------------------------------------------------------


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
