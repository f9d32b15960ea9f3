"""Release results → status: phase, message, conditions, bounded rows."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from herd.api import SkippedCluster, StackStatus
from herd.plan.decide import Action
from herd.plan.releases import ReleaseKey
from herd.plan.results import ReleaseResult, State
from herd.status.build import Phase, conditions, phase_of, stack_status, summary

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def result(cluster: str, chart: str, state: State, message: str = "") -> ReleaseResult:
    return ReleaseResult(
        ReleaseKey(cluster, "ns", chart),
        chart,
        state,
        Action.INSTALL,
        1,
        "1.0.0",
        message,
        updated=NOW,
    )


D, F, S, P = State.DEPLOYED, State.FAILED, State.SKIPPED, State.PENDING
GONE = SkippedCluster(cluster_id="c-m-gone", reason="no cluster has this id or name")


@pytest.mark.parametrize(
    ("states", "skipped", "phase"),
    [
        ([D, D], [], Phase.DEPLOYED),
        ([D, P], [], Phase.DEPLOYING),
        ([D, State.DEPLOYING], [], Phase.DEPLOYING),
        ([D, F], [], Phase.DEGRADED),
        ([D, S], [], Phase.DEGRADED),
        ([D, D], [GONE], Phase.DEGRADED),
        ([F, S], [], Phase.FAILED),
        ([State.UNREACHABLE], [], Phase.FAILED),
        ([], [], Phase.PENDING),
        ([], [GONE], Phase.FAILED),
        ([D, State.UNINSTALLED], [], Phase.DEPLOYED),
    ],
)
def test_phase(states: list[State], skipped: list[SkippedCluster], phase: str) -> None:
    releases = [result("c", f"chart{i}", s) for i, s in enumerate(states)]
    assert phase_of(releases, skipped) == phase


def test_summary_names_the_first_failure() -> None:
    text = summary([result("c-1", "db", D), result("c-1", "llm", F, "timed out")], [])
    assert text == "1 of 2 releases not deployed; first: llm on c-1: failed (timed out)"


def test_ready_reconciling_stalled_follow_the_phase() -> None:
    def flags(phase: str) -> dict[str, str]:
        return {c.type: c.status for c in conditions(phase, "m", 3, NOW)}

    assert flags(Phase.DEPLOYED) == {"Ready": "True", "Reconciling": "False", "Stalled": "False"}
    assert flags(Phase.DEPLOYING) == {"Ready": "False", "Reconciling": "True", "Stalled": "False"}
    assert flags(Phase.DEGRADED) == {"Ready": "False", "Reconciling": "False", "Stalled": "True"}


def test_transition_time_is_kept_while_the_status_holds() -> None:
    first = conditions(Phase.DEPLOYED, "m", 1, NOW)
    later = datetime(2026, 2, 1, tzinfo=UTC)
    again = conditions(Phase.DEPLOYED, "m", 2, later, first)
    assert again[0].last_transition_time == "2026-01-02T03:04:05Z"
    flipped = conditions(Phase.DEGRADED, "m", 2, later, first)
    assert flipped[0].last_transition_time == "2026-02-01T00:00:00Z"


def test_rows_are_bounded_failing_first_with_counts_of_all() -> None:
    releases = [result(f"c-{c:03}", f"chart{k}", D) for c in range(100) for k in range(20)]
    releases[1500] = result("c-075", "chart0", F, "x" * 1000)
    status = stack_status(
        releases,
        targets=[f"c-{c:03}" for c in range(100)],
        skipped=[],
        chart_count=20,
        generation=1,
        now=NOW,
    )
    assert len(status.deployments) == 100
    assert status.deployments[0].status == "Failed"
    assert len(status.deployments[0].message) == 200
    assert status.deployment_counts == {"Deployed": 1999, "Failed": 1}
    size = len(json.dumps(status.model_dump(by_alias=True, exclude_none=True, mode="json")))
    assert size < 100 * 1024, size


def test_status_round_trips_through_the_model() -> None:
    status = stack_status(
        [result("c", "db", D)],
        targets=["c"],
        skipped=[GONE],
        chart_count=1,
        generation=4,
        now=NOW,
    )
    wire = status.model_dump(by_alias=True, exclude_none=True, mode="json")
    assert wire["clusterCount"] == 1 and wire["chartCount"] == 1
    assert wire["skippedClusters"] == [{"clusterId": "c-m-gone", "reason": GONE.reason}]
    assert wire["deployments"][0]["chartName"] == "db"
    assert StackStatus.model_validate(wire) == status
