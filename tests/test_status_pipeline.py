"""The one status pipeline (`herd.status.pipeline.compose`), kind by kind: each write is the
sequence of status parts the keeper used to chain by hand, and the add-on facts of the
previous status survive every write made before the probe has looked."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from herd.api import StackSpec, StackStatus
from herd.api.status import AdmissionStatus, RolloutStatus, SkippedCluster
from herd.plan.clusters import Cluster, KubeconfigRef
from herd.plan.decide import Action
from herd.plan.desired import StackPlan, plan_stack
from herd.plan.placement import PlacementDecision
from herd.plan.releases import ReleaseKey
from herd.plan.results import ReleaseResult, State
from herd.plan.stages import RolloutState
from herd.status import dryrun
from herd.status.addons import OBSERVABILITY_CONFIGURED, SECURITY_SCANNED, carry_over, enrich
from herd.status.build import Phase, deleting_status, failed_status, stack_status
from herd.status.facts import AgentHealth, ClusterGpus, ClusterScan, Observation, ReleaseGpus
from herd.status.pipeline import Kind, Rows, StatusInputs, compose
from herd.status.rollout import with_rollout

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
LATER = datetime(2025, 1, 2, 4, 0, 0, tzinfo=UTC)


def cluster(cluster_id: str) -> Cluster:
    return Cluster(
        id=cluster_id,
        name=cluster_id,
        labels={},
        ready=True,
        source="file",
        kubeconfig=KubeconfigRef.file(Path("/dev/null")),
    )


@dataclass
class Result:
    """A StackResult stand-in: what the pipeline reads of a pass."""

    plan: StackPlan | None
    targets: list[Cluster]
    releases: list[ReleaseResult] = field(default_factory=list)
    skipped: list[SkippedCluster] = field(default_factory=list)
    chart_count: int = 1
    placement: PlacementDecision | None = None
    admission: AdmissionStatus | None = None


def result(*states: State) -> Result:
    spec = StackSpec.model_validate(
        {
            "security": True,
            "observability": True,
            "targets": {"clusterIds": ["c1", "c2"]},
            "charts": [{"name": "app", "repo": "https://r", "version": "1", "namespace": "ns"}],
        }
    )
    releases = [
        ReleaseResult(ReleaseKey(f"c{i}", "ns", "app"), "app", state, revision=1, updated=NOW)
        for i, state in enumerate(states, start=1)
    ]
    return Result(plan_stack(spec), [cluster("c1"), cluster("c2")], releases)


SEEN = Observation(
    scans={"c1": ClusterScan("c1"), "c2": ClusterScan("c2")},
    agents={"c1": AgentHealth("c1", True)},
    gpus={"c1": ClusterGpus(4, 4, largest=4)},
    release_gpus={("c1", "ns", "app"): ReleaseGpus(2, 50.0, per_pod=1)},
)
PAUSED = RolloutStatus(stage="canary", state=RolloutState.PAUSED.value, message="paused")


def final_status(previous: StackStatus | None = None, **more: object) -> StackStatus:
    done = result(State.DEPLOYED, State.DEPLOYED)
    inputs = StatusInputs(
        Kind.FINAL, 3, NOW, previous, rows=Rows.of(done), record=["c1", "c2"], result=done
    )
    return compose(replace(inputs, **more))  # type: ignore[arg-type]


def test_final_is_rows_then_addon_facts_then_the_rollout() -> None:
    done = result(State.DEPLOYED, State.DEPLOYED)
    status = final_status(observed=SEEN, rollout=PAUSED)
    rows = stack_status(
        done.releases,
        targets=["c1", "c2"],
        skipped=[],
        chart_count=1,
        generation=3,
        now=NOW,
        release_clusters=["c1", "c2"],
    )
    expected = enrich(
        carry_over(rows, None),
        done,
        SEEN.scans,
        SEEN.agents,
        now=NOW,
        gpus=SEEN.gpus,
        release_gpus=SEEN.release_gpus,
        insights=SEEN.insights,
    )
    assert status == with_rollout(expected, PAUSED, NOW)
    assert status.phase == Phase.DEPLOYING  # paused: Reconciling, not Stalled
    assert {SECURITY_SCANNED, OBSERVABILITY_CONFIGURED} <= {c.type for c in status.conditions}
    assert status.deployments[0].gpu_utilization == "50%"
    assert status.release_clusters == ["c1", "c2"]


def test_writes_before_the_probe_keep_the_last_addon_facts() -> None:
    seen = final_status(observed=SEEN)
    unseen = final_status(seen)  # the pass's outcome, offered before the probe looked
    assert unseen.deployments[0].gpu_utilization == "50%"
    assert condition_types(unseen) == condition_types(seen)
    progress = compose(
        StatusInputs(
            Kind.PROGRESS,
            4,
            LATER,
            seen,
            rows=Rows(result(State.DEPLOYING).releases, ["c1", "c2"], cluster_count=2),
            record=["c1", "c2"],
        )
    )
    assert progress.phase == Phase.DEPLOYING
    assert progress.deployments[0].security_scan == seen.deployments[0].security_scan
    assert condition_types(progress) == condition_types(seen)


def condition_types(status: StackStatus) -> set[str]:
    return {c.type for c in status.conditions}


def test_progress_shows_the_live_stage_and_a_final_one_where_the_rollout_stops() -> None:
    live = RolloutStatus(stage="canary", state=RolloutState.PROGRESSING.value, message="go")
    progress = compose(
        StatusInputs(
            Kind.PROGRESS,
            1,
            NOW,
            rows=Rows(result(State.DEPLOYING).releases, ["c1"]),
            rollout=PAUSED.model_copy(update={"state": live.state}),
        )
    )
    assert progress.rollout is not None and progress.rollout.state == live.state
    assert progress.phase == Phase.DEPLOYING


def test_dry_run_is_carried_over_and_says_what_apply_would_do() -> None:
    seen = final_status(observed=SEEN)
    rows = [
        ReleaseResult(
            ReleaseKey("c1", "ns", "app"), "app", State.PLANNED, action=Action.UPGRADE, message="x"
        )
    ]
    status = compose(
        StatusInputs(Kind.DRY_RUN, 5, LATER, seen, rows=Rows(rows, ["c1"], chart_count=1))
    )
    expected = dryrun.dry_run_status(
        rows,
        targets=["c1"],
        skipped=[],
        chart_count=1,
        generation=5,
        now=LATER,
        previous=seen,
        max_rows=100,
        reconcile_at=None,
    )
    assert status == carry_over(expected, seen)
    assert status.phase == dryrun.DRY_RUN
    assert status.release_clusters == seen.release_clusters  # nothing changed anywhere


@pytest.mark.parametrize("phase", [Phase.FAILED, Phase.DEGRADED])
def test_failed_keeps_what_the_previous_status_knew(phase: str) -> None:
    seen = final_status(observed=SEEN)
    status = compose(StatusInputs(Kind.FAILED, 4, LATER, seen, message="boom", phase=phase))
    assert status == failed_status("boom", 4, LATER, seen, phase=phase)
    assert status.deployments == seen.deployments


def test_deleting_adds_its_condition() -> None:
    seen = final_status(observed=SEEN)
    inputs = StatusInputs(Kind.DELETING, 4, LATER, seen, message="waiting", reason="Unreach")
    status = compose(inputs)
    assert status == deleting_status("Unreach", "waiting", 4, LATER, seen)
    assert status.phase == Phase.DELETING
    assert "Deleting" in condition_types(status)
