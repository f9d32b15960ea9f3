"""The per-release state table: what to do next about one release. Pure (Herd's `state.go`).

`decide` compares one desired release (`herd.plan.desired`) with what helm has
(`ObservedRelease`, `herd.plan.releases`) and returns a `Decision`: install, upgrade,
nothing, uninstall, recover a release a dead actor left pending, wait for a live one,
refuse a release someone else owns (CONFLICT), or hold a configuration that failed
permanently. Every rule is a row of the table tests (`tests/test_decide.py`).

Callers: the rollout's actions (`herd.rollout.actions`, under the release's lock, on a
fresh observation), `herd plan` and DryRun (`herd.rollout.scheduler.Rollout.decisions`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from herd.names import LABEL_CONFIG
from herd.plan.releases import MANAGERS, DesiredRelease, ObservedRelease, label_value


class Action(enum.StrEnum):
    INSTALL = "install"
    UPGRADE = "upgrade"
    NOTHING = "nothing"
    UNINSTALL = "uninstall"
    RECOVER = "recover"  # a pending-* release left by a dead actor must be unstuck first
    CONFLICT = "conflict"  # the release exists but another tool, Stack or Herd face owns it
    WAIT = "wait"  # a live actor is changing the release right now: leave it alone
    HELD = "held"  # this exact configuration failed permanently before: not retried
    INVALID = "invalid"  # its values cannot be rendered for this cluster (a fact it lacks)
    ROLLBACK = "rollback"  # back to its last good revision (`herd.plan.rollback`)
    REFUSED = "refused"  # targets.placement.requireFit: cannot fit the cluster (a preview)


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str


PENDING = frozenset({"pending-install", "pending-upgrade", "pending-rollback", "uninstalling"})
DEFAULT_TIMEOUT_SECONDS = 300.0  # helm's own default --timeout, for releases of no chart
DEFAULT_STUCK_SECONDS = 60.0  # HERD_STUCK_SECONDS


@dataclass(frozen=True)
class Context:
    """What `decide` needs besides the release itself.

    `now` (epoch seconds) and `stuck_after` (seconds beyond the chart's timeout) age a
    pending-* release: younger, a live actor may own it. `held` is the config digest whose
    last attempt failed permanently. `manager`/`force`: the C2 face check. `abandoned`:
    the operation journal proves the actor of a pending-* release gone (`herd.plan.journal`).
    """

    owner: str
    manager: str = "operator"
    force: bool = False
    now: float = 0.0
    stuck_after: float = DEFAULT_STUCK_SECONDS
    held: str | None = None
    abandoned: bool = False


def decide(
    desired: DesiredRelease | None,
    observed: ObservedRelease | None,
    owner: str,
    *,
    manager: str = "operator",
    force: bool = False,
    now: float | None = None,
    stuck_after: float = DEFAULT_STUCK_SECONDS,
    held: str | None = None,
    abandoned: bool = False,
) -> Decision:
    """The one thing to do next about a release. `owner` is this Stack's owner label.

    A pending-* release is stuck (RECOVER) only when helm's last change to it is older
    than the chart's timeout plus `stuck_after` at `now` (epoch seconds); the caller
    holds the release's lock, so no task of this process is running it. Otherwise a live
    actor owns it (WAIT), unless the journal proves its actor gone (`abandoned`: the
    Lease changed hands, or this process's helm for it ended): then RECOVER at once. A
    release the CLI moves (its `cli` manager label) waits for the age rule in any case.
    `now=None` is the read-only view (`herd plan`): every pending-* counts as stuck.
    """
    if desired is not None and desired.problem:
        return Decision(Action.INVALID, desired.problem)
    context = Context(owner, manager, force, now or 0.0, stuck_after, held, abandoned)
    if desired is not None and desired.owner is not None:
        context = replace(context, owner=desired.owner)
    foreign = _foreign(desired, observed, context)
    if foreign is not None:
        return foreign
    if observed is None:
        if desired is None:
            return Decision(Action.NOTHING, "absent, as desired")
        return _unless_held(desired, context, Decision(Action.INSTALL, "not installed"))
    if observed.status in PENDING:
        return _pending(desired, observed, context, checked=now is not None)
    if desired is None:
        return Decision(Action.UNINSTALL, "no longer in the Stack or its targets")
    if observed.status == "uninstalled":
        return _unless_held(
            desired, context, Decision(Action.INSTALL, "uninstalled (history kept)")
        )
    if observed.status != "deployed":
        reason = f"last operation left it {observed.status}"
        return _unless_held(desired, context, Decision(Action.UPGRADE, reason))
    if context.force and observed.manager not in (None, context.manager):
        taken = MANAGERS.get(observed.manager or "", observed.manager)
        return Decision(Action.UPGRADE, f"taken over from {taken} (forced)")
    if observed.labels.get(LABEL_CONFIG) != desired.config:
        old, new = observed.chart_version, label_value(desired.chart.version)
        if old and old != new:
            return _unless_held(
                desired, context, Decision(Action.UPGRADE, f"chart version {old} -> {new}")
            )
        return _unless_held(
            desired, context, Decision(Action.UPGRADE, "values or chart source changed")
        )
    return Decision(Action.NOTHING, "up to date")


HELD_MESSAGE = "not retried: last attempt with this configuration failed"


def _foreign(
    desired: DesiredRelease | None, observed: ObservedRelease | None, context: Context
) -> Decision | None:
    """CONFLICT (or NOTHING, for a release we do not want) when someone else owns it."""
    if observed is None:
        return None
    if observed.owner != context.owner:
        if desired is None:
            return Decision(Action.NOTHING, "not managed by this Stack")
        return Decision(
            Action.CONFLICT,
            f"release {observed.namespace}/{observed.name} exists and is "
            f"{_owned_by(observed.owner, context.owner)}; Herd will not take it over",
        )
    shared = desired is not None and desired.owner is not None
    other = observed.manager
    if shared or context.force or other is None or other == context.manager:
        return None
    how = "use --force to take it over" if context.manager == "cli" else "unless forced"
    return Decision(
        Action.CONFLICT,
        f"release {observed.namespace}/{observed.name} is managed by "
        f"{MANAGERS.get(other, other)}; {how}",
    )


def _owned_by(other: str | None, mine: str) -> str:
    """Who owns a release, as a Stack may be told: the owning Stack only when it is in the
    same namespace (a tenant learns nothing of other tenants' Stacks)."""
    if not other:
        return "managed by another tool"
    if other.partition(".")[0] == mine.partition(".")[0]:
        return f"managed by Stack {other}"
    return "owned by another Stack"


def _pending(
    desired: DesiredRelease | None, observed: ObservedRelease, context: Context, *, checked: bool
) -> Decision:
    if not checked or observed.modified is None:
        # No clock (herd plan) or helm gave no time: nothing tells a live actor apart.
        return Decision(Action.RECOVER, f"stuck in {observed.status}")
    age = max(0.0, context.now - observed.modified)
    if context.abandoned and observed.manager != "cli":
        return Decision(
            Action.RECOVER, f"left {observed.status} by a stopped controller {age:.0f} s ago"
        )
    timeout = desired.chart.timeout_seconds if desired is not None else DEFAULT_TIMEOUT_SECONDS
    if age <= timeout + context.stuck_after:
        return Decision(
            Action.WAIT, f"operation in progress elsewhere, {age:.0f} s old ({observed.status})"
        )
    return Decision(Action.RECOVER, f"stuck in {observed.status} for {age:.0f} s")


def _unless_held(desired: DesiredRelease, context: Context, decision: Decision) -> Decision:
    if context.held is not None and context.held == desired.attempt:
        return Decision(Action.HELD, HELD_MESSAGE)
    return decision
