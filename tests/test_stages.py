"""The staged rollout's pure decisions: stage assignment, maxConcurrent, and `decide`."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from herd.api import parse_spec
from herd.api.rollout import IMPLICIT_STAGE, RolloutSpec
from herd.api.status import RolloutStatus, StackStatus
from herd.errors import SpecError
from herd.plan.clusters import Cluster, KubeconfigRef
from herd.plan.stages import (
    ClusterState,
    RolloutState,
    Stage,
    StageRecord,
    assign_stages,
    decide,
    resolve_max_concurrent,
)
from herd.rollout.admission import Admission
from herd.status.build import conditions
from herd.status.rollout import records_of, rollout_events, rollout_status, with_rollout

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
DONE, FAILED, PENDING = ClusterState.DONE, ClusterState.FAILED, ClusterState.PENDING


def cluster(cid: str, **labels: str) -> Cluster:
    return Cluster(cid, cid, labels, True, "file", KubeconfigRef.file(Path("/dev/null")))


def rollout(*stages: dict[str, Any], max_failures: int = 0) -> RolloutSpec:
    spec = parse_spec(
        {
            "targets": {"clusterIds": ["x"]},
            "charts": [{"name": "a", "repo": "https://r", "version": "1"}],
            "rollout": {"stages": list(stages), "maxFailures": max_failures},
        }
    )
    assert spec.rollout is not None
    return spec.rollout


# -- the API -----------------------------------------------------------------------------


def spec_errors(rollout_body: dict[str, Any]) -> list[str]:
    body = {
        "targets": {"clusterIds": ["x"]},
        "charts": [{"name": "a", "repo": "https://r", "version": "1"}],
        "rollout": rollout_body,
    }
    with pytest.raises(SpecError) as caught:
        parse_spec(body)
    return [str(p) for p in caught.value.problems]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {"stages": [{"name": "a", "clusterIds": ["x"]}, {"name": "a", "clusterIds": ["y"]}]},
            "spec.rollout.stages: stage name 'a' is used twice",
        ),
        ({"stages": [{"name": "Canary", "clusterIds": ["x"]}]}, "spec.rollout.stages[0].name"),
        (
            {"stages": [{"name": "a", "clusterIds": ["x"], "maxConcurrent": "150%"}]},
            "spec.rollout.stages[0].maxConcurrent: must be a number or a percentage",
        ),
        (
            {"stages": [{"name": "a", "clusterIds": ["x"], "maxConcurrent": 0}]},
            "spec.rollout.stages[0].maxConcurrent: must be at least 1",
        ),
        (
            {"stages": [{"name": "a", "clusterIds": ["x"], "maxConcurrent": "x%"}]},
            "spec.rollout.stages[0].maxConcurrent",
        ),
        (
            {"stages": [{"name": "a", "clusterIds": ["x"], "pause": "soon"}]},
            "spec.rollout.stages[0].pause: must be a Go duration",
        ),
        ({"stages": [{"name": "a"}]}, "stage 'a' needs clusterIds or a selector"),
        ({"stages": []}, "spec.rollout.stages"),
        (
            {"stages": [{"name": IMPLICIT_STAGE, "clusterIds": ["x"]}]},
            "reserved for the implicit last stage",
        ),
        (
            {"stages": [{"name": "a", "clusterIds": ["x"]}], "maxFailures": -1},
            "spec.rollout.maxFailures",
        ),
    ],
)
def test_invalid_rollouts_name_the_field(body: dict[str, Any], expected: str) -> None:
    assert any(expected in error for error in spec_errors(body)), spec_errors(body)


def test_valid_rollout_parses() -> None:
    spec = rollout(
        {"name": "canary", "clusterIds": ["c1"], "maxConcurrent": 1, "pause": "approval"},
        {"name": "prod", "selector": {"matchLabels": {"env": "prod"}}, "maxConcurrent": "50%"},
        {"name": "late", "clusterIds": ["c9"], "pause": "1m30s"},
    )
    assert [s.pause_seconds for s in spec.stages] == [None, None, 90.0]
    assert spec.stages[1].max_concurrent == "50%"


# -- assignment and maxConcurrent ----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "size", "expected"),
    [
        (None, 7, 7),
        (None, 0, 1),
        (1, 5, 1),
        (9, 5, 5),
        ("50%", 4, 2),
        ("50%", 3, 1),
        ("25%", 3, 1),  # rounded down, at least 1
        ("100%", 3, 3),
        ("1%", 1000, 10),
    ],
)
def test_max_concurrent(value: int | str | None, size: int, expected: int) -> None:
    assert resolve_max_concurrent(value, size) == expected


@given(st.integers(1, 100), st.integers(0, 500))
def test_percentages_stay_within_the_stage(percent: int, size: int) -> None:
    got = resolve_max_concurrent(f"{percent}%", size)
    assert 1 <= got <= max(1, size)
    assert got == max(1, size * percent // 100)


def test_first_stage_that_selects_a_cluster_wins_and_the_rest_is_implicit() -> None:
    clusters = [cluster("c1", env="prod"), cluster("c2", env="prod"), cluster("c3", env="dev")]
    stages = assign_stages(
        rollout(
            {"name": "canary", "clusterIds": ["c2"], "pause": "approval"},
            {"name": "prod", "selector": {"matchLabels": {"env": "prod"}}, "maxConcurrent": "50%"},
        ),
        clusters,
    )
    assert [(s.name, s.clusters, s.max_concurrent, s.approval) for s in stages] == [
        ("canary", ("c2",), 1, True),
        ("prod", ("c1",), 1, False),
        (IMPLICIT_STAGE, ("c3",), 1, False),
    ]
    assert stages[-1].implicit


def test_without_rollout_one_implicit_stage() -> None:
    stages = assign_stages(None, [cluster("b"), cluster("a")])
    assert [(s.name, s.clusters, s.max_concurrent) for s in stages] == [
        (IMPLICIT_STAGE, ("a", "b"), 2)
    ]


@given(
    st.lists(st.sampled_from(["a", "b", "c", "d", "e", "f"]), unique=True),
    st.lists(
        st.lists(st.sampled_from(["a", "b", "c", "d", "e", "f", "zz"]), min_size=1), max_size=20
    ),
)
def test_every_cluster_is_in_exactly_one_stage(ids: list[str], picks: list[list[str]]) -> None:
    spec = (
        rollout(*({"name": f"s{i}", "clusterIds": p} for i, p in enumerate(picks)))
        if picks
        else None
    )
    stages = assign_stages(spec, [cluster(i) for i in ids])
    placed = [c for s in stages for c in s.clusters]
    assert sorted(placed) == sorted(ids)
    for stage in stages:
        assert 1 <= stage.max_concurrent <= max(1, len(stage.clusters))


# -- decide --------------------------------------------------------------------------------

CANARY = Stage("canary", ("c1",), 1, approval=True)
SOAK = Stage("soak", ("c2",), 1, pause_seconds=60)
PROD = Stage("prod", ("c3", "c4"), 1)
STAGES = [CANARY, SOAK, PROD]
CONFIGS = ["k1", "k2", "k3"]


def run(states: dict[str, ClusterState], records: list[StageRecord] | None = None, **kw: Any):  # type: ignore[no-untyped-def]
    return decide(STAGES, states, records or [], CONFIGS, now=kw.pop("now", NOW), **kw)


def test_the_first_stage_runs_first() -> None:
    decision = run({})
    assert (decision.state, decision.stage, decision.active) == (
        RolloutState.PROGRESSING,
        "canary",
        0,
    )
    assert decision.waiting == "waiting for stage canary"


def test_approval_gate_waits_then_opens_with_the_annotation() -> None:
    waiting = run({"c1": DONE})
    assert waiting.state is RolloutState.WAITING_FOR_APPROVAL and waiting.active is None
    assert "herd.suse.com/approve=canary" in waiting.message
    assert waiting.records[0] == StageRecord("k1", NOW, False)
    assert run({"c1": DONE}, approval="prod").state is RolloutState.WAITING_FOR_APPROVAL
    opened = run({"c1": DONE}, list(waiting.records), approval="canary")
    assert (opened.active, opened.stage, opened.approved) == (1, "soak", "canary")
    assert opened.records[0].approved
    # Recorded: the gate stays open without the annotation, for this config only.
    assert run({"c1": DONE}, list(opened.records)).active == 1
    changed = decide(STAGES, {"c1": DONE}, list(opened.records), ["new", "k2", "k3"], now=NOW)
    assert changed.state is RolloutState.WAITING_FOR_APPROVAL


def test_soak_pause_is_measured_from_the_recorded_success() -> None:
    approved = StageRecord("k1", NOW - timedelta(hours=1), True)
    first = run({"c1": DONE, "c2": DONE}, [approved])
    assert first.state is RolloutState.PAUSED and first.stage == "soak"
    assert first.wake_at == NOW + timedelta(seconds=60)
    # A restart 30 s later keeps the timestamp: 30 s left, not 60.
    later = run({"c1": DONE, "c2": DONE}, list(first.records), now=NOW + timedelta(seconds=30))
    assert later.state is RolloutState.PAUSED and later.wake_at == first.wake_at
    over = run({"c1": DONE, "c2": DONE}, list(first.records), now=NOW + timedelta(seconds=61))
    assert (over.state, over.active, over.stage) == (RolloutState.PROGRESSING, 2, "prod")


def test_a_new_config_restarts_the_soak() -> None:
    records = [StageRecord("k1", NOW, True), StageRecord("old", NOW - timedelta(hours=2))]
    decision = run({"c1": DONE, "c2": DONE}, records)
    assert decision.state is RolloutState.PAUSED
    assert decision.records[1] == StageRecord("k2", NOW, False)


def test_failures_halt_past_the_budget_and_name_the_first() -> None:
    halted = run({"c1": FAILED}, first_failure="chart a on cluster c1: boom")
    assert (halted.state, halted.stage, halted.active) == (RolloutState.HALTED, "canary", None)
    assert "1 failed clusters exceed maxFailures 0" in halted.message
    assert "first failure: chart a on cluster c1: boom" in halted.message
    within = run({"c1": FAILED}, max_failures=1)
    assert (within.state, within.active) == (RolloutState.PROGRESSING, None)
    assert "1 failed (within maxFailures 1)" in within.message


def test_failures_of_later_stages_do_not_count_before_they_start() -> None:
    decision = run({"c4": FAILED})
    assert (decision.state, decision.active) == (RolloutState.PROGRESSING, 0)


def test_an_incomplete_stage_holds_the_next_one_back() -> None:
    decision = run({"c1": PENDING})
    assert (decision.state, decision.active, decision.stage) == (
        RolloutState.PROGRESSING,
        None,
        "canary",
    )


def test_complete_and_counts() -> None:
    records = [StageRecord("k1", NOW, True), StageRecord("k2", NOW - timedelta(hours=1))]
    decision = run({c: DONE for c in ("c1", "c2", "c3", "c4")}, records)
    assert decision.state is RolloutState.COMPLETE and decision.active is None
    assert decision.done == (1, 1, 2)


def test_suspended_runs_nothing() -> None:
    decision = run({}, suspended=True)
    assert (decision.state, decision.active, decision.waiting) == (
        RolloutState.SUSPENDED,
        None,
        "suspended",
    )


@given(
    st.dictionaries(st.sampled_from(["c1", "c2", "c3", "c4"]), st.sampled_from(list(ClusterState))),
    st.integers(0, 3),
    st.sampled_from([None, "canary", "soak"]),
    st.integers(0, 120),
)
def test_decide_invariants(
    states: dict[str, ClusterState], max_failures: int, approval: str | None, later: int
) -> None:
    decision = run(
        states, max_failures=max_failures, approval=approval, now=NOW + timedelta(seconds=later)
    )
    assert len(decision.records) == len(STAGES)
    if decision.active is not None:
        # A stage runs only when every earlier stage succeeded and its gate is open.
        for stage in STAGES[: decision.active]:
            assert all(states.get(c) is DONE for c in stage.clusters)
        assert decision.state is RolloutState.PROGRESSING
    failed = [c for c, s in states.items() if s is FAILED]
    if decision.state is RolloutState.HALTED:
        assert len(failed) > max_failures
    if decision.state is RolloutState.COMPLETE:
        assert all(states.get(c) is DONE for s in STAGES for c in s.clusters)


# -- status, conditions and Events --------------------------------------------------------


def test_records_round_trip_through_the_status() -> None:
    decision = run({"c1": DONE})
    status = rollout_status(STAGES, decision)
    assert status.state == "WaitingForApproval" and status.stage == "canary"
    assert [(s.name, s.done, s.total) for s in status.stages] == [
        ("canary", 1, 1),
        ("soak", 0, 1),
        ("prod", 0, 2),
    ]
    back = RolloutStatus.model_validate(status.model_dump(by_alias=True, mode="json"))
    assert records_of(back, STAGES) == list(decision.records)
    assert records_of(None, STAGES) == [StageRecord()] * 3


def base_status(phase: str) -> StackStatus:
    return StackStatus(
        phase=phase,
        deployment_counts={"Deployed": 1, "Pending": 2},
        conditions=conditions(phase, "x", 1, NOW),
    )


@pytest.mark.parametrize(
    ("state", "phase", "ready", "reconciling", "stalled"),
    [
        ("Paused", "Deploying", "False", "True", "False"),
        ("WaitingForApproval", "Deploying", "False", "True", "False"),
        ("Halted", "Degraded", "False", "False", "True"),
        ("Suspended", "Deploying", "False", "False", "False"),
    ],
)
def test_conditions_follow_the_rollout_state(
    state: str, phase: str, ready: str, reconciling: str, stalled: str
) -> None:
    status = with_rollout(
        base_status("Deploying"), RolloutStatus(stage="a", state=state, message="m"), NOW
    )
    found = {c.type: c.status for c in status.conditions}
    assert (status.phase, found["Ready"], found["Reconciling"], found["Stalled"]) == (
        phase,
        ready,
        reconciling,
        stalled,
    )
    assert status.message == "m" and status.rollout is not None


def test_events_on_transitions_only() -> None:
    waiting = rollout_status(STAGES, run({"c1": DONE}))
    events = rollout_events(None, waiting)
    assert [e[1] for e in events] == ["StageSucceeded", "WaitingForApproval"]
    assert rollout_events(waiting, waiting) == []
    started = rollout_status(STAGES, run({}))
    assert [e[1] for e in rollout_events(None, started)] == ["StageStarted"]
    halted = rollout_status(STAGES, run({"c1": FAILED}))
    assert [e[:2] for e in rollout_events(started, halted)] == [("Warning", "RolloutHalted")]


# -- admission (the per-stage bound and the budget; asyncio only, no helm) -----------------


async def test_admission_bounds_in_flight_and_stops_new_clusters_past_the_budget() -> None:
    admission = Admission(2, budget=0, stage="prod", known=frozenset({"held"}))
    refused: dict[str, str] = {}
    release = asyncio.Event()

    async def cluster(name: str, fails: bool) -> None:
        async with admission.slot(name) as why:
            refused[name] = why
            if why:
                return
            await release.wait()
            admission.finished(name, fails)

    tasks = [asyncio.create_task(cluster(n, n == "a")) for n in ("a", "b", "c", "held")]
    await asyncio.sleep(0.05)
    assert admission.in_flight == 2  # a and b; c and held queue behind the bound
    release.set()
    await asyncio.gather(*tasks)
    assert admission.peak == 2
    assert admission.failed == ["a"] and admission.halted
    assert "rollout halted in stage prod" in refused["c"]
    assert refused["held"] == ""  # failed before the stage: still runs, counted once


def test_progressing_and_complete_keep_the_release_phase() -> None:
    status = with_rollout(
        base_status("Degraded"), RolloutStatus(stage="a", state="Progressing", message="m"), NOW
    )
    assert status.phase == "Degraded" and status.message == ""
    assert status.rollout is not None and status.rollout.state == "Progressing"


def test_a_stage_already_done_at_this_config_does_not_start_again() -> None:
    """Every pass walks the stages from the first: a canary at the current config is no
    StageStarted, only the stage that has work is."""
    waiting = rollout_status(STAGES, run({"c1": DONE}))
    again = rollout_status(STAGES, run({}, list(run({"c1": DONE}).records)))
    assert again.state == "Progressing" and again.stage == "canary"
    assert rollout_events(waiting, again) == []
