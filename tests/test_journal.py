"""The operation journal's rules (`herd.plan.journal`) and the Lease fence, as tables.

A pending release is abandoned only when it is pending exactly where a journaled helm
operation left it (revision and status), no helm of this process runs it, and the
hand-over grace has passed; `decide` then recovers it at once, except a CLI's release.
"""

from __future__ import annotations

import time

import pytest
from kubernetes import client

from herd.kube.journal import ManagementJournal
from herd.operator.leader import HANDOVER_SECONDS, fenced
from herd.plan.decide import Action, decide
from herd.plan.journal import (
    MAX_AGE_SECONDS,
    Operation,
    abandoned,
    abandoned_in,
    decode,
    deploying,
    encode,
    entry_key,
    recovering,
    removing,
)
from herd.plan.releases import ObservedRelease, ReleaseKey
from tests.test_decide import DB, NOW, OWNER, found


def release(status: str, revision: int) -> ObservedRelease:
    return ObservedRelease("default", "db", status, revision, {"status": status})


def op(revision: int, statuses: tuple[str, ...]) -> Operation:
    return Operation(revision, statuses, "pod_1_abc", 3, NOW)


@pytest.mark.parametrize(
    ("before", "where"),
    [
        (None, (1, ("pending-install", "pending-upgrade"))),
        (release("deployed", 4), (5, ("pending-install", "pending-upgrade"))),
        (release("uninstalled", 2), (3, ("pending-install", "pending-upgrade"))),
    ],
)
def test_an_upgrade_is_pending_at_the_next_revision(
    before: ObservedRelease | None, where: tuple[int, tuple[str, ...]]
) -> None:
    assert deploying(before) == where


def test_recovery_and_removal_are_pending_where_helm_leaves_them() -> None:
    assert recovering(release("pending-upgrade", 4)) == (5, ("pending-rollback",))
    assert recovering(release("pending-install", 1)) == (1, ("uninstalling",))
    assert removing(release("deployed", 7)) == (7, ("uninstalling",))


@pytest.mark.parametrize(
    ("operation", "observed", "running", "handed_over", "expected"),
    [
        (op(5, ("pending-upgrade",)), release("pending-upgrade", 5), False, True, True),
        # within the grace, the old holder's helm may still run
        (op(5, ("pending-upgrade",)), release("pending-upgrade", 5), False, False, False),
        # this process's own helm runs it
        (op(5, ("pending-upgrade",)), release("pending-upgrade", 5), True, True, False),
        # another actor moved it since (a later revision, or another status)
        (op(5, ("pending-upgrade",)), release("pending-upgrade", 6), False, True, False),
        (op(5, ("pending-upgrade",)), release("pending-rollback", 5), False, True, False),
        # nothing journaled: a live actor's (a CLI, a user's helm), whatever its labels say
        (None, release("pending-upgrade", 5), False, True, False),
    ],
)
def test_abandoned_only_where_a_journaled_operation_left_it(
    operation: Operation | None,
    observed: ObservedRelease,
    running: bool,
    handed_over: bool,
    expected: bool,
) -> None:
    assert abandoned(operation, observed, running=running, handed_over=handed_over) is expected


@pytest.mark.parametrize(
    ("operation", "observed", "running", "grace", "expected"),
    [
        # the old holder's helm may run 3 s more: recover then, not at the next pass
        (op(5, ("pending-upgrade",)), release("pending-upgrade", 5), False, 3.0, 3.0),
        (op(5, ("pending-upgrade",)), release("pending-upgrade", 5), False, -1.0, 0.0),
        # waiting cannot make these abandoned: this process's helm, another actor's revision
        (op(5, ("pending-upgrade",)), release("pending-upgrade", 5), True, 3.0, None),
        (op(5, ("pending-upgrade",)), release("pending-upgrade", 6), False, 3.0, None),
        (None, release("pending-upgrade", 5), False, 3.0, None),
    ],
)
def test_abandoned_in_says_how_long_the_grace_still_holds_it(
    operation: Operation | None,
    observed: ObservedRelease,
    running: bool,
    grace: float,
    expected: float | None,
) -> None:
    assert abandoned_in(operation, observed, running=running, grace=grace) == expected


def test_the_journal_round_trips_and_drops_old_or_broken_entries() -> None:
    kept = op(5, ("pending-upgrade",))
    old = Operation(2, ("uninstalling",), "pod_2_def", 1, NOW - MAX_AGE_SECONDS - 1)
    text = encode({"c1/default/db": kept, "c1/default/old": old})
    assert decode(text, NOW) == {"c1/default/db": kept}
    assert decode('{"c1/x/y": {"revision": "x"}}', NOW) == {}
    assert decode("not json", NOW) == {}
    assert decode('["a list"]', NOW) == {}


@pytest.mark.parametrize(
    ("manager", "age", "action"),
    [
        ("operator", 5, Action.RECOVER),  # far younger than timeout 120 + 60
        (None, 5, Action.RECOVER),
        ("cli", 5, Action.WAIT),  # the CLI's release waits for the age rule
        ("cli", 181, Action.RECOVER),
    ],
)
def test_decide_recovers_an_abandoned_release_at_once(
    manager: str | None, age: float, action: Action
) -> None:
    observed = found("pending-upgrade", age=age, manager=manager)
    force = manager == "cli"  # the operator reaches a CLI's release only when it may
    decision = decide(DB, observed, OWNER, now=NOW, abandoned=True, force=force)
    assert decision.action is action
    if action is Action.RECOVER and age < 100:
        assert "stopped controller" in decision.reason


def test_not_abandoned_keeps_the_age_rule() -> None:
    decision = decide(DB, found("pending-upgrade", age=5), OWNER, now=NOW, abandoned=False)
    assert decision.action is Action.WAIT


@pytest.mark.parametrize(
    ("since_renewal", "expected"),
    [(0.0, False), (10.0, False), (10.0 + HANDOVER_SECONDS / 2 - 0.1, False), (13.0, True)],
)
def test_the_fence_fires_before_a_new_leader_recovers(since_renewal: float, expected: bool) -> None:
    # A standby takes the Lease >= duration (10 s) after the last renewal and recovers
    # HANDOVER_SECONDS later: the fence fires half of the grace before that.
    assert fenced(100.0, 100.0 + since_renewal, 10.0) is expected


def test_a_holder_known_gone_leaves_its_operations_to_recover_without_grace() -> None:
    """`ManagementJournal(gone=...)`: the process that ended with all its helm (a restart
    on the same work directory) needs no hand-over grace; any other former holder does."""
    journal = ManagementJournal(
        client.ApiClient(), "ns", "lease", "pod_2_def", 4, time.monotonic(), 600.0, gone="pod_1_abc"
    )
    dead, other = ReleaseKey("c1", "default", "db"), ReleaseKey("c1", "default", "web")
    journal._operations = {  # what `load` reads from the ConfigMap
        entry_key(dead): op(5, ("pending-upgrade",)),
        entry_key(other): Operation(5, ("pending-upgrade",), "pod_0_aaa", 2, NOW),
    }
    assert journal.abandoned_in(dead, release("pending-upgrade", 5)) == 0.0
    waits = journal.abandoned_in(other, release("pending-upgrade", 5))
    assert waits is not None and 500.0 < waits <= 600.0
