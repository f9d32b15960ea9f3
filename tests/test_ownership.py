"""The ownership record's decisions (`herd.plan.ownership`): which leftovers Herd may remove,
when an uninstall skips hooks, how a pass updates the record, and the record's bound."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from herd.names import LABEL_STACK
from herd.plan.decide import Action
from herd.plan.deletion import decide as deletion_decide
from herd.plan.ownership import (
    Leftover,
    MemoryOwnership,
    Owned,
    StackRef,
    bounded,
    decode,
    encode,
    leftover,
    leftovers,
    next_record,
    pinned,
)
from herd.plan.releases import ObservedRelease, ReleaseKey
from herd.plan.results import ReleaseResult, State
from herd.rollout.actions import calls_lookup

OWNER = "team.app"


def release(
    name: str, owner: str | None = OWNER, ns: str = "apps", rev: int = 1
) -> ObservedRelease:
    labels = {"name": name, "version": str(rev), "owner": "helm"}
    if owner is not None:
        labels[LABEL_STACK] = owner
    return ObservedRelease(ns, name, "deployed", rev, labels)


@pytest.mark.parametrize(
    ("observed", "recorded", "allowed", "known", "verdict"),
    [
        # Recorded, still labelled for the Stack, namespace granted: removed.
        (release("db"), 3, True, True, Leftover.REMOVE),
        # A forged (or an older Herd's) release: labelled, never recorded: left in place.
        (release("forged"), None, True, True, Leftover.UNRECORDED),
        # Neither recorded nor labelled: none of the Stack's business.
        (release("other", owner="x.y"), None, True, True, None),
        (release("plain", owner=None), None, True, True, None),
        # Recorded but relabelled since: a conflict, left in place.
        (release("db", owner="x.y"), 3, True, True, Leftover.RELABELLED),
        # Recorded, but the namespace is no longer granted: left in place.
        (release("db"), 3, False, True, Leftover.NOT_GRANTED),
        # The cluster's record could not be read: nothing labelled is removed.
        (release("db"), None, True, False, Leftover.UNKNOWN),
    ],
)
def test_which_leftover_is_removed(
    observed: ObservedRelease,
    recorded: int | None,
    allowed: bool,
    known: bool,
    verdict: Leftover | None,
) -> None:
    found = leftover(observed, OWNER, recorded, allowed=allowed, known=known)
    assert (found.verdict if found else None) is verdict
    if found is not None and verdict is not Leftover.REMOVE:
        assert "left in place" in found.message
        assert (
            f"{observed.namespace}/{observed.name}" in found.message or "namespace" in found.message
        )


def test_leftovers_skip_wanted_releases_and_check_grants_per_namespace() -> None:
    observed = [release("keep"), release("old"), release("forged"), release("far", ns="other")]
    found = leftovers(
        observed,
        [("apps", "keep")],
        OWNER,
        {"apps/old": 2, "other/far": 1, "apps/keep": 1},
        lambda ns: ns == "apps",
    )
    verdicts = {o.name: d.verdict for o, d in found}
    assert verdicts == {
        "old": Leftover.REMOVE,
        "forged": Leftover.UNRECORDED,
        "far": Leftover.NOT_GRANTED,
    }


@pytest.mark.parametrize(
    ("recorded", "latest", "no_hooks"),
    [(3, 3, False), (3, 4, True), (3, 2, True), (None, 5, False)],
)
def test_an_unrecorded_revision_skips_hooks(
    recorded: int | None, latest: int, no_hooks: bool
) -> None:
    reason = pinned(recorded, latest)
    assert bool(reason) is no_hooks
    if no_hooks:
        assert f"revision {latest}" in reason


def row(
    name: str,
    state: State,
    action: Action | None,
    revision: int | None,
    *,
    cluster: str = "c1",
    config: str | None = "cfg",
) -> ReleaseResult:
    return ReleaseResult(
        ReleaseKey(cluster, "apps", name), name, state, action, revision, config=config
    )


@pytest.mark.parametrize(
    ("before", "rows", "observed", "migrating", "after"),
    [
        # An install and an upgrade are recorded with the revision helm made.
        (
            {},
            [
                row("a", State.DEPLOYED, Action.INSTALL, 1),
                row("b", State.DEPLOYED, Action.UPGRADE, 4),
            ],
            {"c1": {"apps/a", "apps/b"}},
            False,
            {"c1": {"apps/a": 1, "apps/b": 4}},
        ),
        # A failed install that left a revision of Herd's is recorded (so it can go).
        (
            {},
            [row("a", State.FAILED, Action.INSTALL, 1)],
            {"c1": {"apps/a"}},
            False,
            {"c1": {"apps/a": 1}},
        ),
        # A refused render (no revision) records nothing.
        ({}, [row("a", State.FAILED, Action.UPGRADE, None)], {"c1": set()}, False, {}),
        # An uninstall drops it, and so does a release that vanished.
        (
            {"c1": {"apps/a": 1, "apps/gone": 2}},
            [row("a", State.UNINSTALLED, Action.UNINSTALL, 1, config=None)],
            {"c1": set()},
            False,
            {},
        ),
        # Up to date, not migrating: the record is not rewritten from a label.
        (
            {"c1": {"apps/a": 1}},
            [row("a", State.DEPLOYED, Action.NOTHING, 7)],
            {"c1": {"apps/a"}},
            False,
            {"c1": {"apps/a": 1}},
        ),
        ({}, [row("a", State.DEPLOYED, Action.NOTHING, 7)], {"c1": {"apps/a"}}, False, {}),
        # Migrating (no record yet): a desired release at its state is adopted...
        (
            {},
            [row("a", State.DEPLOYED, Action.NOTHING, 7)],
            {"c1": {"apps/a"}},
            True,
            {"c1": {"apps/a": 7}},
        ),
        # ...but never a leftover (no desired config) left in place.
        ({}, [row("x", State.SKIPPED, None, 2, config=None)], {"c1": {"apps/x"}}, True, {}),
        # A cluster not observed this pass keeps its record.
        ({"c2": {"apps/a": 1}}, [], {"c1": set()}, False, {"c2": {"apps/a": 1}}),
    ],
)
def test_the_record_after_a_pass(
    before: dict[str, dict[str, int]],
    rows: list[ReleaseResult],
    observed: dict[str, set[str]],
    migrating: bool,
    after: dict[str, dict[str, int]],
) -> None:
    owned = Owned(before, migrating=frozenset({"c1"}) if migrating else frozenset())
    assert next_record(owned, rows, observed) == after


def test_shared_addons_and_unknown_clusters_are_never_recorded() -> None:
    shared = row("neuvector", State.DEPLOYED, Action.INSTALL, 1)
    unknown = row("a", State.DEPLOYED, Action.INSTALL, 1, cluster="c9")
    owned = Owned({"c9": {"apps/old": 1}}, unknown=frozenset({"c9"}))
    after = next_record(
        owned, [shared, unknown], {"c1": {"apps/neuvector"}, "c9": set()}, [shared.key]
    )
    assert after == {"c9": {"apps/old": 1}}


def test_the_record_is_bounded_in_a_stable_order() -> None:
    record = {f"c{i}": {f"ns/r{j}": 1 for j in range(30)} for i in range(10)}
    cut = bounded(record, limit=100)
    assert sum(len(r) for r in cut.values()) == 100
    assert list(cut) == ["c0", "c1", "c2", "c3"]
    assert len(cut["c3"]) == 10
    assert bounded(record, limit=100) == cut


def test_encode_decode_round_trip_drops_garbage() -> None:
    ref = StackRef("team", "app", "uid-1")
    text = encode(ref, {"c1": {"apps/a": 3}})
    assert json.loads(text)["stack"] == "team/app"
    assert decode(text) == {"c1": {"apps/a": 3}}
    hostile = json.dumps(
        {"releases": {"c1": {"apps/a": "3", "apps/b": -1, "apps/c": True, "apps/d": 2}, "c2": []}}
    )
    assert decode(hostile) == {"c1": {"apps/d": 2}}
    assert decode("not json") == {}
    assert decode(None) == {}
    assert decode("[1, 2]") == {}


async def test_the_memory_store_migrates_a_new_stack_then_remembers() -> None:
    store = MemoryOwnership()
    ref = StackRef("team", "app")
    first = await store.load(ref, {"c1": None})
    assert first.migrating == {"c1"}
    await store.save(ref, first, {"c1": {"apps/a": 1}}, {})
    again = await store.load(ref, {"c1": None})
    assert again.migrating == frozenset()
    assert again.revision(ReleaseKey("c1", "apps", "a")) == 1
    await store.drop(ref, {})
    assert (await store.load(ref, {})).releases == {}


def test_a_cluster_no_longer_granted_is_orphaned_not_waited_for() -> None:
    verdict = deletion_decide(
        holding={"a", "b"},
        inventory={"a", "b"},
        unchecked={},
        denied={"b"},
    )
    assert verdict.done
    assert verdict.not_granted == ("b",)
    assert not verdict.waiting


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"templates/cm.yaml": "kind: ConfigMap"}, False),
        ({"templates/cm.yaml": '{{ if lookup "v1" "Secret" "ns" "x" }}{{ end }}'}, True),
        ({"charts/sub/templates/_h.tpl": '{{ (lookup "v1" "Pod" "" "") }}'}, True),
        ({"charts/sub-0.1.0.tgz": "packed"}, True),
        ({"values.yaml": "lookup: not a template"}, False),
        ({"templates/x.yaml": "lookups: a word, not the function"}, False),
    ],
)
def test_which_charts_get_a_render_with_lookup_from_the_cluster(
    tmp_path: Path, files: dict[str, str], expected: bool
) -> None:
    for name, text in files.items():
        path = tmp_path / "chart" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert calls_lookup(tmp_path / "chart") is expected
