"""The deletion decision: finish, or wait naming what it waits for."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from herd.names import ORPHAN_ANNOTATION
from herd.plan.deletion import decide, orphaned_clusters

A, B, C = "c-a", "c-b", "c-c"


@pytest.mark.parametrize(
    ("holding", "inventory", "unchecked", "failed", "orphan", "done", "waiting", "released"),
    [
        # Everything reached and clean.
        ({A, B}, {A, B, C}, {}, {}, set(), True, {}, ()),
        # A recorded cluster is down: wait, naming it.
        (
            {A, B},
            {A, B},
            {B: "connection refused"},
            {},
            set(),
            False,
            {B: "connection refused"},
            (),
        ),
        # An unreadable cluster that never held the Stack's releases does not hold it back.
        ({A}, {A, B}, {B: "connection refused"}, {}, set(), True, {}, ()),
        # Orphaned by the annotation: given up on.
        ({A, B}, {A, B}, {B: "down"}, {}, {B}, True, {}, ()),
        # Gone from the inventory: released (with a warning), not waited for.
        ({A, B}, {A}, {}, {}, set(), True, {}, (B,)),
        # A failed uninstall holds deletion back.
        ({A}, {A}, {}, {A: "db (ns/db): boom"}, set(), False, {}, ()),
        # ...unless that cluster is orphaned.
        ({A}, {A}, {}, {A: "db (ns/db): boom"}, {A}, True, {}, ()),
        # Nothing recorded, nothing found.
        (set(), {A}, {}, {}, set(), True, {}, ()),
    ],
)
def test_decide(
    holding: set[str],
    inventory: set[str],
    unchecked: Mapping[str, str],
    failed: Mapping[str, str],
    orphan: set[str],
    done: bool,
    waiting: Mapping[str, str],
    released: tuple[str, ...],
) -> None:
    verdict = decide(
        holding=holding, inventory=inventory, unchecked=unchecked, failed=failed, orphan=orphan
    )
    assert (verdict.done, dict(verdict.waiting), verdict.released) == (done, waiting, released)


def test_the_verdict_names_the_clusters_and_the_way_out() -> None:
    verdict = decide(holding={A, B}, inventory={A, B}, unchecked={A: "refused", B: "no route"})
    assert verdict.reason == "ClusterUnreachable"
    message = verdict.message()
    assert "c-a (refused)" in message and "c-b (no route)" in message
    assert ORPHAN_ANNOTATION in message
    many = decide(
        holding={f"c-{i}" for i in range(50)},
        inventory={f"c-{i}" for i in range(50)},
        unchecked={f"c-{i}": "down" for i in range(50)},
    )
    assert "and 40 more" in many.message() and len(many.message()) < 600
    failed = decide(holding={A}, inventory={A}, unchecked={}, failed={A: "db (ns/db): boom"})
    assert failed.reason == "UninstallFailed" and "on c-a: db (ns/db): boom" in failed.message()


@pytest.mark.parametrize(
    ("annotations", "clusters"),
    [
        ({}, set()),
        ({ORPHAN_ANNOTATION: ""}, set()),
        ({ORPHAN_ANNOTATION: "c-a"}, {A}),
        ({ORPHAN_ANNOTATION: " c-a, c-b ,,"}, {A, B}),
    ],
)
def test_orphaned_clusters(annotations: dict[str, str], clusters: set[str]) -> None:
    assert orphaned_clusters(annotations) == clusters
