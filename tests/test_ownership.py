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
    DIGEST_CHARS,
    MAX_RELEASES,
    NO_DIGEST,
    NOT_HERDS,
    Leftover,
    MemoryOwnership,
    Owned,
    Recorded,
    Releases,
    StackRef,
    bounded,
    decode,
    encode,
    leftover,
    leftovers,
    manifest_digest,
    next_record,
    pinned,
    stored_verdict,
)
from herd.plan.releases import ObservedRelease, ReleaseKey
from herd.plan.results import ReleaseResult, State
from herd.rollout.actions import calls_lookup

OWNER = "team.app"
DIGEST = manifest_digest("kind: ConfigMap\n")


def records(revisions: dict[str, dict[str, int]]) -> dict[str, Releases]:
    """A record of revisions only (no digests), as tables write it."""
    return {c: {k: Recorded(v) for k, v in mine.items()} for c, mine in revisions.items()}


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
        {"apps/old": Recorded(2), "other/far": Recorded(1, DIGEST), "apps/keep": Recorded(1)},
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
    manifest: str | None = None,
) -> ReleaseResult:
    return ReleaseResult(
        ReleaseKey(cluster, "apps", name),
        name,
        state,
        action,
        revision,
        config=config,
        manifest=manifest,
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
    owned = Owned(records(before), migrating=frozenset({"c1"}) if migrating else frozenset())
    assert next_record(owned, rows, observed) == records(after)


def test_the_record_keeps_the_digest_of_what_herd_wrote_and_no_other() -> None:
    owned = Owned(
        {"c1": {"apps/a": Recorded(1, DIGEST), "apps/b": Recorded(2, DIGEST)}},
        migrating=frozenset({"c1"}),
    )
    rows = [
        row("a", State.DEPLOYED, Action.UPGRADE, 2, manifest=manifest_digest("new")),
        row("b", State.DEPLOYED, Action.NOTHING, 3),  # a revision Herd did not write
        row("c", State.FAILED, Action.INSTALL, 1),  # helm failed: no manifest to vouch for
        row("d", State.DEPLOYED, Action.NOTHING, 5),  # adopted: its digest is unknown
    ]
    after = next_record(owned, rows, {"c1": {"apps/a", "apps/b", "apps/c", "apps/d"}})
    assert after == {
        "c1": {
            "apps/a": Recorded(2, manifest_digest("new")),
            "apps/b": Recorded(2, DIGEST),
            "apps/c": Recorded(1),
            "apps/d": Recorded(5),
        }
    }


def test_shared_addons_and_unknown_clusters_are_never_recorded() -> None:
    shared = row("neuvector", State.DEPLOYED, Action.INSTALL, 1)
    unknown = row("a", State.DEPLOYED, Action.INSTALL, 1, cluster="c9")
    owned = Owned(records({"c9": {"apps/old": 1}}), unknown=frozenset({"c9"}))
    after = next_record(
        owned, [shared, unknown], {"c1": {"apps/neuvector"}, "c9": set()}, [shared.key]
    )
    assert after == records({"c9": {"apps/old": 1}})


def test_the_record_is_bounded_in_a_stable_order() -> None:
    record = records({f"c{i}": {f"ns/r{j}": 1 for j in range(30)} for i in range(10)})
    cut = bounded(record, limit=100)
    assert sum(len(r) for r in cut.values()) == 100
    assert list(cut) == ["c0", "c1", "c2", "c3"]
    assert len(cut["c3"]) == 10
    assert bounded(record, limit=100) == cut


def test_encode_decode_round_trip_drops_garbage() -> None:
    ref = StackRef("team", "app", "uid-1")
    text = encode(ref, records({"c1": {"apps/a": 3}}))
    assert json.loads(text)["stack"] == "team/app"
    assert decode(text) == records({"c1": {"apps/a": 3}})
    hostile = json.dumps(
        {"releases": {"c1": {"apps/a": "3", "apps/b": -1, "apps/c": True, "apps/d": 2}, "c2": []}}
    )
    assert decode(hostile) == records({"c1": {"apps/d": 2}})
    assert decode("not json") == {}
    assert decode(None) == {}
    assert decode("[1, 2]") == {}


async def test_the_memory_store_migrates_a_new_stack_then_remembers() -> None:
    store = MemoryOwnership()
    ref = StackRef("team", "app")
    first = await store.load(ref, {"c1": None})
    assert first.migrating == {"c1"}
    await store.save(ref, first, records({"c1": {"apps/a": 1}}), {})
    again = await store.load(ref, {"c1": None})
    assert again.migrating == frozenset()
    assert again.revision(ReleaseKey("c1", "apps", "a")) == 1
    await store.drop(ref, {})
    assert (await store.load(ref, {})).releases == {}


def test_digests_are_encoded_with_their_revision_and_old_records_still_decode() -> None:
    ref = StackRef("team", "app", "uid-1")
    record = {"c1": {"apps/a": Recorded(3, DIGEST), "apps/b": Recorded(2)}}
    text = encode(ref, record)
    assert json.loads(text)["releases"] == {"c1": {"apps/a": [3, DIGEST], "apps/b": 2}}
    assert decode(text) == record
    old = '{"stack":"team/app","releases":{"c1":{"apps/a":3}}}'  # before digests
    assert decode(old) == {"c1": {"apps/a": Recorded(3)}}
    hostile = {
        "apps/short": [3, "abc"],  # not a digest Herd makes
        "apps/three": [3, DIGEST, 1],
        "apps/zero": [0, DIGEST],
        "apps/flag": [True, DIGEST],
        "apps/number": [3, 7],
        "apps/ok": [4, DIGEST],
    }
    found = decode(json.dumps({"releases": {"c1": hostile}}))
    assert found == {"c1": {"apps/ok": Recorded(4, DIGEST)}}


def test_the_worst_case_record_fits_a_configmap() -> None:
    """MAX_RELEASES releases with the longest ids (a 63-character namespace, a 53-character
    release name), large revisions and digests, 40 releases per 63-character cluster id,
    in the ConfigMap's 1 MiB with room for its metadata."""
    ns, name = "n" * 63, "r" * 50
    record = {
        f"{c:04d}".ljust(63, "c"): {
            f"{ns}/{name}{r:03d}": Recorded(99_999, DIGEST) for r in range(40)
        }
        for c in range(MAX_RELEASES // 40)
    }
    text = encode(StackRef("n" * 63, "s" * 253, "uid"), record)
    assert sum(len(r) for r in decode(text).values()) == MAX_RELEASES
    assert len(text.encode()) < 1024 * 1024 - 64 * 1024, len(text)


def test_a_manifest_digest_is_stable_and_short() -> None:
    assert manifest_digest("a: 1\n") == manifest_digest("a: 1\n") != manifest_digest("a: 2\n")
    assert len(DIGEST) == DIGEST_CHARS
    assert manifest_digest("\ud800 lone surrogate") != DIGEST  # forged bytes never raise


@pytest.mark.parametrize(
    ("recorded", "latest", "stored", "why"),
    [
        # Herd recorded this revision with this digest, and it is the latest: applied.
        (Recorded(3, DIGEST), 3, DIGEST, ""),
        # The revision Herd wrote was overwritten: its digest is not the recorded one.
        (Recorded(3, DIGEST), 3, manifest_digest("kind: ClusterRoleBinding"), NOT_HERDS),
        # Somebody added a newer revision: the release is not the one Herd wrote.
        (Recorded(3, DIGEST), 4, DIGEST, NOT_HERDS),
        (Recorded(3, DIGEST), 2, DIGEST, NOT_HERDS),
        # The manifest could not be read.
        (Recorded(3, DIGEST), 3, None, NOT_HERDS),
        # A record without a digest (before digests; adopted; a failed helm call).
        (Recorded(3), 3, DIGEST, NO_DIGEST),
        # No record at all.
        (None, 3, DIGEST, NO_DIGEST),
    ],
)
def test_only_the_manifest_herd_wrote_may_be_applied(
    recorded: Recorded | None, latest: int, stored: str | None, why: str
) -> None:
    assert stored_verdict(recorded, latest, stored) == why
    assert not why or why.startswith("not corrected: ")


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
