"""The operation journal's data: which Herd process started which helm operation. Pure.

Before it runs helm on a release (install, upgrade, rollback, uninstall), the operator
writes an `Operation` to its journal on the management cluster (`herd.kube.journal`): the
release, the revision and status helm will leave while it works (`pending-upgrade` at
revision 4, `uninstalling` at 3, ...), the Lease holder and term it acted under, and when.

A new leader reads the journal when it takes the Lease. A release still pending at exactly
that revision and status was left by a helm that is gone: its process lost the Lease (and
was fenced, `herd.operator.leader`) or died. `abandoned` says so once the hand-over grace
has passed; the release is recovered then, whatever the chart's timeout. Only Herd writes
the journal (the controller's namespace); a release Secret, which a tenant may write,
never makes a release abandoned, it can only fail to match (then helm's own age rule of
`herd.plan.decide` applies, as before). The CLI keeps no journal: its releases carry the
`cli` manager label and are never recovered early.

Callers: `herd.kube.journal` (storage), `herd.rollout.actions` (through it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from herd.plan.releases import ObservedRelease, ReleaseKey

DEPLOYING = ("pending-install", "pending-upgrade")
ROLLING_BACK = ("pending-rollback",)
UNINSTALLING = ("uninstalling",)
MAX_AGE_SECONDS = 24 * 3600.0  # older entries go: the age rule has recovered them anyway


@dataclass(frozen=True)
class Operation:
    """One helm operation as its actor recorded it before starting helm."""

    revision: int  # the revision helm marks pending while the operation runs
    statuses: tuple[str, ...]  # the pending statuses it may show meanwhile
    holder: str  # the Lease holder identity of the process that started it
    term: int  # the Lease's transitions when it started
    started: float  # epoch seconds

    def matches(self, observed: ObservedRelease) -> bool:
        return observed.revision == self.revision and observed.status in self.statuses


def deploying(observed: ObservedRelease | None) -> tuple[int, tuple[str, ...]]:
    """Where `helm upgrade --install` leaves a release while it runs."""
    return (observed.revision if observed else 0) + 1, DEPLOYING


def recovering(observed: ObservedRelease) -> tuple[int, tuple[str, ...]]:
    """Where `ClusterHelm.recover` leaves it: a rollback writes the next revision, the
    removal of a half install marks the same one `uninstalling`."""
    if observed.status in ("pending-upgrade", "pending-rollback") and observed.revision > 1:
        return observed.revision + 1, ROLLING_BACK
    return observed.revision, UNINSTALLING


def removing(observed: ObservedRelease) -> tuple[int, tuple[str, ...]]:
    """Where `helm uninstall` leaves it."""
    return observed.revision, UNINSTALLING


def entry_key(key: ReleaseKey) -> str:
    return f"{key.cluster}/{key.namespace}/{key.name}"


def encode(operations: Mapping[str, Operation]) -> str:
    return json.dumps({k: asdict(v) for k, v in sorted(operations.items())}, sort_keys=True)


def decode(text: str | None, now: float) -> dict[str, Operation]:
    """The stored journal; unreadable entries and entries older than a day are dropped."""
    try:
        raw = json.loads(text or "{}")
    except ValueError:
        return {}
    found: dict[str, Operation] = {}
    for key, value in raw.items() if isinstance(raw, dict) else ():
        try:
            operation = Operation(
                revision=int(value["revision"]),
                statuses=tuple(str(s) for s in value["statuses"]),
                holder=str(value["holder"]),
                term=int(value["term"]),
                started=float(value["started"]),
            )
        except (KeyError, TypeError, ValueError):
            continue
        if now - operation.started < MAX_AGE_SECONDS:
            found[str(key)] = operation
    return found


def abandoned(
    operation: Operation | None,
    observed: ObservedRelease,
    *,
    running: bool,
    handed_over: bool,
) -> bool:
    """True when `observed` is pending exactly where a journaled operation left it, no helm
    of this process runs it (`running`), and the hand-over grace has passed since this
    process took the Lease (`handed_over`): no live actor can be moving it."""
    return handed_over and abandoned_in(operation, observed, running=running, grace=0.0) == 0.0


def abandoned_in(
    operation: Operation | None, observed: ObservedRelease, *, running: bool, grace: float
) -> float | None:
    """Seconds until `observed` is `abandoned`, `grace` being what is left of the hand-over
    grace (0: it is now); None when waiting cannot make it so (no journaled operation left
    it exactly there, or a helm of this process runs it)."""
    if operation is None or running or not operation.matches(observed):
        return None
    return max(0.0, grace)
