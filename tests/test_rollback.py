"""Fleet rollback's pure parts: the spec fields, the last good record (remember, target,
bounds, encoding, its worst-case size), the reverse order, the scope, each release's step,
the check of a stored revision, the stages passed, and the status part and its Events."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from herd.api import parse_spec
from herd.api.status import RolloutStatus
from herd.errors import SpecError
from herd.plan import lastgood
from herd.plan.graph import ChartGraph
from herd.plan.lastgood import Good, Passed, remember, target, values_digest
from herd.plan.ownership import StackRef
from herd.plan.rollback import (
    HISTORY_GONE,
    Step,
    passed,
    requested_clusters,
    reverse_waves,
    rollback_clusters,
    step,
    verify,
)
from herd.plan.stages import ClusterState, Decision, RolloutState, Stage
from herd.rollout.staged_rollback import rollout_config
from herd.status.rollout import rollback_events, rollback_status, rollout_status

DONE, FAILED, PENDING = ClusterState.DONE, ClusterState.FAILED, ClusterState.PENDING
D1, D2 = values_digest({"message": "v1"}), values_digest({"message": "v2"})
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def spec(rollout: dict[str, Any]) -> Any:
    return parse_spec(
        {
            "targets": {"clusterIds": ["x"]},
            "charts": [{"name": "a", "repo": "https://r", "version": "1"}],
            "rollout": {"stages": [{"name": "s", "clusterIds": ["x"]}], **rollout},
        }
    )


# -- the spec ----------------------------------------------------------------------------


def test_on_failure_defaults_to_halt_and_rollback_scope_to_stage() -> None:
    assert spec({}).rollout.on_failure == "Halt"
    assert spec({}).rollout.rollback_scope is None
    assert spec({"onFailure": "Rollback"}).rollout.rollback_scope == "Stage"
    assert spec({"onFailure": "Rollback", "scope": "Rollout"}).rollout.rollback_scope == "Rollout"


@pytest.mark.parametrize(
    ("rollout", "expected"),
    [
        ({"onFailure": "Undo"}, "spec.rollout.onFailure"),
        ({"onFailure": "Rollback", "scope": "Fleet"}, "spec.rollout.scope"),
        ({"scope": "Rollout"}, "scope: Rollout applies only with onFailure: Rollback"),
    ],
)
def test_invalid_rollback_fields_are_named(rollout: dict[str, Any], expected: str) -> None:
    with pytest.raises(SpecError) as caught:
        spec(rollout)
    assert any(expected in str(p) for p in caught.value.problems), caught.value.problems


# -- the last good record ------------------------------------------------------------------


def item(cluster: str, version: str, values: str, revision: int) -> Passed:
    return Passed(cluster, "ns", "api", version, values, revision, "m" * 32)


def test_remember_keeps_two_distinct_entries_newest_first() -> None:
    record = remember({}, [item("c1", "0.1.0", D1, 1)], 1)
    record = remember(record, [item("c1", "0.1.0", D1, 1)], 1)  # the same again: no change
    assert record == {"c1": {"ns/api": (Good(1, "0.1.0", D1, 1, "m" * 32),)}}
    record = remember(record, [item("c1", "0.2.0", D2, 2)], 2)
    record = remember(record, [item("c1", "0.2.0", D2, 3)], 3)  # same config, new revision
    assert [(g.version, g.revision) for g in record["c1"]["ns/api"]] == [("0.2.0", 3), ("0.1.0", 1)]
    record = remember(record, [item("c1", "0.3.0", D1, 4)], 4)
    assert [g.version for g in record["c1"]["ns/api"]] == ["0.3.0", "0.2.0"]


def test_target_is_the_newest_entry_other_than_the_desired_one() -> None:
    entries = (Good(2, "0.2.0", D2, 2), Good(1, "0.1.0", D1, 1))
    assert target(entries, "0.2.0", D2) == entries[1]  # the rollout moved it: back to gen 1
    assert target(entries, "0.3.0", D2) == entries[0]  # it failed at 0.3.0: back to gen 2
    assert target(entries[1:], "0.1.0", D1) is None  # not changed by this rollout


def test_a_version_too_long_is_not_recorded() -> None:
    assert remember({}, [item("c1", "9" * 65, D1, 1)], 1) == {}


def test_record_bound_and_worst_case_size_fit_a_configmap() -> None:
    worst = {
        f"c-m-{i:08d}": {
            f"{'n' * 63}/{str(i).rjust(53, 'r')}": tuple(
                Good(2**31, "v" * 64, "d" * 32, 2**31, "e" * 32) for _ in range(lastgood.KEPT)
            )
        }
        for i in range(lastgood.MAX_RELEASES + 50)
    }
    bounded = lastgood.bounded(worst)
    assert sum(len(r) for r in bounded.values()) == lastgood.MAX_RELEASES
    text = lastgood.encode("default/" + "s" * 253, worst)
    assert len(text.encode()) < 1_000_000  # a ConfigMap holds 1 MiB, names and labels included
    assert lastgood.decode(text) == bounded


def test_decode_drops_malformed_entries() -> None:
    good = [1, "0.1.0", D1, 3, None]
    text = json.dumps(
        {
            "releases": {
                "c1": {"ns/a": [good, [1, "0.1.0", "short", 3, None]], "ns/b": "x"},
                "c2": {"ns/c": [[True, "0.1.0", D1, 3, None], [1, "", D1, 3, None]]},
                "c3": [],
            }
        }
    )
    assert lastgood.decode(text) == {"c1": {"ns/a": (Good(*good),)}}
    assert lastgood.decode("{not json") == {}


async def test_memory_store_round_trip_and_drop() -> None:
    store, ref = lastgood.MemoryLastGood(), StackRef("default", "s", "uid")
    record = remember({}, [item("c1", "0.1.0", D1, 1)], 1)
    await store.save(ref, record, {})
    assert await store.load(ref, {}) == record
    await store.drop(ref, {})
    assert await store.load(ref, {}) == {}


# -- order, scope, steps ---------------------------------------------------------------------


def test_reverse_waves_puts_dependents_first() -> None:
    specs = parse_spec(
        {
            "targets": {"clusterIds": ["x"]},
            "charts": [
                {"name": "db", "repo": "https://r", "version": "1"},
                {"name": "cache", "repo": "https://r", "version": "1"},
                {"name": "api", "repo": "https://r", "version": "1", "dependsOn": ["db"]},
                {"name": "web", "repo": "https://r", "version": "1", "dependsOn": ["api"]},
            ],
        }
    ).charts
    waves = ChartGraph(specs).waves()
    assert reverse_waves(waves, ["db", "cache", "api", "web"]) == [
        ["web"],
        ["api"],
        ["db", "cache"],
    ]
    assert reverse_waves(waves, ["db", "web"]) == [["web"], ["db"]]


STAGES = [
    Stage("first", ("c1", "c2"), 2),
    Stage("canary", ("c3", "c4"), 2),
    Stage("prod", ("c5",), 1),
]
STATES = {"c1": DONE, "c2": FAILED, "c3": FAILED, "c4": DONE, "c5": PENDING}


def test_scope_stage_is_the_failed_clusters_of_the_failed_stage() -> None:
    assert rollback_clusters(STAGES, STATES, 1, "Stage") == ["c3"]


def test_scope_rollout_adds_every_moved_cluster_never_a_later_stage() -> None:
    chosen = rollback_clusters(STAGES, STATES, 1, "Rollout")
    assert sorted(chosen) == ["c1", "c2", "c3", "c4"]
    assert "c5" not in chosen


def test_cli_clusters_by_stage_and_scope() -> None:
    assert requested_clusters(STAGES, "canary", "Stage") == ["c3", "c4"]
    assert requested_clusters(STAGES, "canary", "Rollout") == ["c1", "c2", "c3", "c4"]
    assert requested_clusters(STAGES, None, "Stage") == ["c1", "c2", "c3", "c4", "c5"]


@pytest.mark.parametrize(
    ("entries", "observed", "expected", "revision"),
    [
        ((), 3, Step.SKIP, None),
        ((Good(1, "0.1.0", D1, 1),), 1, Step.UNCHANGED, 1),  # the rollout did not change it
        ((Good(1, "0.1.0", D1, 1),), None, Step.SKIP, 1),  # the release is gone
        ((Good(2, "0.2.0", D2, 4), Good(1, "0.1.0", D1, 2)), 2, Step.UNCHANGED, 2),
        ((Good(1, "0.1.0", D1, 2),), 5, Step.ROLL_BACK, 2),
        ((Good(2, "0.2.0", D2, 4), Good(1, "0.1.0", D1, 2)), 4, Step.ROLL_BACK, 2),
    ],
)
def test_step(
    entries: tuple[Good, ...], observed: int | None, expected: Step, revision: int | None
) -> None:
    decided = step(entries, "0.2.0", D2, observed)
    assert decided.step is expected
    assert (decided.good.revision if decided.good else None) == revision


def test_verify_refuses_a_record_without_a_manifest_digest() -> None:
    assert "another manifest" in verify(Good(1, "0.1.0", D1, 2, None), "0.1.0", D1, "m" * 32)


@pytest.mark.parametrize(
    ("stored", "why"),
    [
        (("0.1.0", D1, "m" * 32), ""),
        ((None, None, None), HISTORY_GONE),
        (("0.9.0", D1, "m" * 32), "is chart version 0.9.0, not the recorded 0.1.0"),
        (("0.1.0", D2, "m" * 32), "holds other values"),
        (("0.1.0", D1, "f" * 32), "holds another manifest"),  # a forged release Secret
    ],
)
def test_verify_refuses_a_revision_that_is_not_the_recorded_one(
    stored: tuple[str | None, str | None, str | None], why: str
) -> None:
    found = verify(Good(1, "0.1.0", D1, 2, "m" * 32), *stored)
    assert (why in found) if why else found == ""


def decision(state: RolloutState, stage: str) -> Decision:
    return Decision(state, stage, "", None, ())


@pytest.mark.parametrize(
    ("state", "stage", "expected"),
    [
        (RolloutState.COMPLETE, "prod", [0, 1, 2]),
        (RolloutState.PAUSED, "canary", [0]),  # canary soaks: not passed yet
        (RolloutState.WAITING_FOR_APPROVAL, "canary", [0, 1]),  # soak over
        (RolloutState.HALTED, "canary", [0]),
        (RolloutState.PROGRESSING, "first", []),
        (RolloutState.SUSPENDED, "first", []),
    ],
)
def test_passed_stages(state: RolloutState, stage: str, expected: list[int]) -> None:
    assert passed(decision(state, stage), ["first", "canary", "prod"]) == expected


def test_rollout_config_changes_with_generation_and_configs() -> None:
    assert rollout_config(["a", "b"], 2) == rollout_config(["a", "b"], 2)
    assert rollout_config(["a", "b"], 2) != rollout_config(["a", "b"], 3)
    assert rollout_config(["a", "b"], 2) != rollout_config(["a", "c"], 2)


# -- status and Events -----------------------------------------------------------------------


def test_rollback_status_is_bounded_and_round_trips() -> None:
    rows = [(f"c{i}", "RolledBack", "x" * 1000) for i in range(150)]
    part = rollback_status("canary", "Rollout", "cfg", NOW, rows)
    assert len(part.clusters) == 100 and part.cluster_count == 150
    assert all(len(c.message) <= 400 for c in part.clusters)
    status = rollout_status(
        STAGES, Decision(RolloutState.HALTED, "canary", "m", None, ()), rollback=part
    )
    back = RolloutStatus.model_validate(status.model_dump(by_alias=True, mode="json"))
    assert back.rollback == part


def test_rolled_back_events_once_per_rollback() -> None:
    part = rollback_status(
        "canary", "Stage", "cfg", NOW, [("c3", "RolledBack", "ok"), ("c4", "Failed", "no")]
    )
    current = RolloutStatus(state="Halted", stage="canary", rollback=part)
    events = rollback_events(None, current)
    assert [(k, r) for k, r, _ in events] == [
        ("Normal", "RolledBack"),
        ("Warning", "RollbackFailed"),
    ]
    assert rollback_events(current, current) == []  # the next pass: nothing new
