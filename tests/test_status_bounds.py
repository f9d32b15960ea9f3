"""Bounded status at fleet scale, the release record, held failures, deletion status."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from herd.api import SkippedCluster, StackStatus
from herd.api.status import DeploymentRow
from herd.operator.keeper import held_releases, previous_targets
from herd.plan.decide import Action
from herd.plan.releases import ReleaseKey
from herd.plan.results import ReleaseResult, State
from herd.status.build import (
    RELEASE_CLUSTERS_LIMIT,
    TEXT_LIMIT,
    Phase,
    deleting_status,
    failed_status,
    release_record,
    stack_status,
)

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def result(
    cluster: str, chart: str, state: State, message: str = "", **extra: object
) -> ReleaseResult:
    return ReleaseResult(
        ReleaseKey(cluster, "ns", chart),
        chart,
        state,
        Action.INSTALL,
        1,
        "1.0.0",
        message,
        updated=NOW,
        **extra,  # type: ignore[arg-type]
    )


def test_status_of_1000_clusters_stays_under_100_kib() -> None:
    clusters = [f"c-m-{i:08d}" for i in range(1000)]
    long = "error: " + "x" * 5000
    releases = [
        result(c, f"chart-{j}", State.FAILED if i % 3 else State.DEPLOYED, long, config="d" * 32)
        for i, c in enumerate(clusters)
        for j in range(20)
    ]
    skipped = [
        SkippedCluster(cluster_id=f"c-s-{i:08d}", reason="not ready " * 100) for i in range(1000)
    ]
    status = stack_status(
        releases,
        targets=clusters,
        skipped=skipped,
        chart_count=20,
        generation=1,
        now=NOW,
        release_clusters=clusters + [s.cluster_id for s in skipped],
    )
    size = len(json.dumps(status.model_dump(by_alias=True, exclude_none=True, mode="json")))
    assert size < 100 * 1024, size
    assert status.cluster_count == 1000 and len(status.target_clusters) == 100
    assert status.skipped_cluster_count == 1000 and len(status.skipped_clusters) == 100
    assert status.release_cluster_count == 2000
    assert len(status.release_clusters) == RELEASE_CLUSTERS_LIMIT
    assert sum(status.deployment_counts.values()) == 20_000 and len(status.deployments) == 100
    assert all(len(c.message) <= TEXT_LIMIT for c in status.conditions)
    assert previous_targets(status) is None, "a cut record makes the next pass check every cluster"
    spec_error = failed_status("; ".join(["spec.charts[0].x: bad"] * 1000), 1, NOW)
    assert len(spec_error.message) == TEXT_LIMIT


@pytest.mark.parametrize(
    ("previous", "holding", "unverified", "record"),
    [
        ([], ["a"], [], ["a"]),
        (["a", "b"], ["a"], [], ["a"]),  # b checked and clean: dropped
        (["a", "b"], ["a"], ["b"], ["a", "b"]),  # b was down: kept
        (["b"], [], ["b", "c"], ["b"]),  # only recorded clusters are kept
        (["a"], [], [], []),
    ],
)
def test_release_record(
    previous: list[str], holding: list[str], unverified: list[str], record: list[str]
) -> None:
    assert release_record(previous, holding, unverified) == record


def row(cluster: str, failed_config: str | None, message: str = "boom") -> DeploymentRow:
    return DeploymentRow(
        chart_name="db",
        cluster_id=cluster,
        release_name="db",
        namespace="ns",
        status="Failed",
        message=message,
        failed_config=failed_config,
    )


PREVIOUS = StackStatus(
    phase=Phase.DEGRADED,
    observed_generation=3,
    reconcile_at="t1",
    deployments=[row("a", "digest-1"), row("b", None)],
)


@pytest.mark.parametrize(
    ("generation", "reconcile_at", "held"),
    [
        (3, "t1", {ReleaseKey("a", "ns", "db"): "digest-1"}),
        (4, "t1", {}),  # the spec changed: retry
        (3, "t2", {}),  # a retry was asked for
        (3, None, {}),
    ],
)
def test_held_releases(
    generation: int, reconcile_at: str | None, held: dict[ReleaseKey, str]
) -> None:
    assert held_releases(PREVIOUS, generation, reconcile_at) == held
    assert held_releases(None, generation, reconcile_at) == {}


def test_a_permanent_failure_keeps_its_digest_and_a_held_one_its_first_message() -> None:
    first = stack_status(
        [result("a", "db", State.FAILED, "values don't meet the specifications", config="d1")],
        targets=["a"],
        skipped=[],
        chart_count=1,
        generation=1,
        now=NOW,
    )
    assert first.deployments[0].failed_config == "d1"
    transient = stack_status(
        [result("a", "db", State.FAILED, "refused", config="d1", transient=True)],
        targets=["a"],
        skipped=[],
        chart_count=1,
        generation=1,
        now=NOW,
    )
    assert transient.deployments[0].failed_config is None
    again = stack_status(
        [result("a", "db", State.FAILED, "not retried", config="d1", held=True)],
        targets=["a"],
        skipped=[],
        chart_count=1,
        generation=1,
        now=NOW,
        previous=first,
    )
    assert again.deployments[0].message == "values don't meet the specifications"
    assert again.deployments[0].failed_config == "d1"


def test_deleting_status_names_what_it_waits_for() -> None:
    status = deleting_status("ClusterUnreachable", "waiting for clusters c-a", 2, NOW, PREVIOUS)
    assert status.phase == Phase.DELETING
    deleting = next(c for c in status.conditions if c.type == "Deleting")
    assert (deleting.status, deleting.reason) == ("True", "ClusterUnreachable")
    assert "c-a" in deleting.message
    later = deleting_status(
        "ClusterUnreachable",
        "waiting for clusters c-a",
        2,
        datetime(2027, 1, 1, tzinfo=UTC),
        status,
    )
    assert (
        next(c for c in later.conditions if c.type == "Deleting").last_transition_time
        == deleting.last_transition_time
    )
    assert [c.type for c in later.conditions].count("Deleting") == 1
