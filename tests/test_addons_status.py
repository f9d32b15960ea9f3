"""Add-on status as tables: images in manifests, scan verdicts, and the summaries.

`enrich` and `carry_over` (the add-on sections, conditions and row fields of a Stack
status) are `tests/test_addons_enrich.py`.
"""

from __future__ import annotations

from typing import Any

import pytest

from herd.addons.images import Workload, manifest_facts, normalize
from herd.addons.probe import workload_ready
from herd.status.facts import (
    AgentHealth,
    ClusterScan,
    FailOn,
    ImageScan,
    ScanReport,
    ScanState,
)
from herd.status.observability import observability_summary, row_metrics
from herd.status.security import Verdict, cluster_state, release_verdict, security_summary

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
