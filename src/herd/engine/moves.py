"""The rollouts of an engine pass: one rollout's rows and what it holds into the
`StackResult`, a staged pass (`staged_pass`), and the make-before-break end of a
placement move.

`settle_moves`: when `targets.placement` moved the Stack from cluster A to cluster B, A
(leaving) is uninstalled only once every release of the Stack on the picked clusters is
Deployed in this pass. Until then A keeps its releases (its rollout runs the plan, so its
rows are observed, not assumed) and its rows say it is being replaced, and why not yet.
So a failing install on B never leaves the Stack on neither cluster.
Callers: `herd.engine.engine` (`Engine.apply`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace

from herd.engine.protocols import StackResult
from herd.plan.desired import StackPlan
from herd.plan.placement import PlacementDecision
from herd.plan.results import State
from herd.rollout.scheduler import Rollout
from herd.rollout.staged import StageInputs, run_staged
from herd.rollout.target import Target


async def run_rollout(
    result: StackResult,
    rollout: Rollout,
    plan: StackPlan | None,
    targets: Sequence[Target],
    holding: set[str],
) -> None:
    """One unstaged rollout of `plan` (None: remove) over `targets`, into `result`."""
    result.releases += await rollout.apply(plan, targets)
    merge_rollout(result, rollout, holding)


def merge_rollout(result: StackResult, rollout: Rollout, holding: set[str]) -> None:
    """A rollout's unreachable clusters into `result`, and what it holds into `holding`."""
    result.unreachable.update(rollout.unreachable)
    holding |= rollout.holding


async def staged_pass(
    result: StackResult,
    reachable: list[Target],
    departed: list[Target],
    *,
    new_rollout: Callable[[], Rollout],
    holding: set[str],
    staging: StageInputs | None,
) -> StackResult:
    """`Engine.apply` in stages (`herd.rollout.staged`). The clusters the Stack left are
    cleaned up as without stages, except while suspended or for `--stage`: then
    nothing is written there and they keep what they hold."""
    assert result.plan is not None
    spec = result.plan.spec
    staging = staging or StageInputs()
    rollout = new_rollout()
    known = {s.cluster_id: s.reason for s in result.skipped}
    known |= {c: d.message for c, d in rollout.deferred.items()}
    known |= {key.cluster: "its last attempt failed permanently" for key in rollout.held}
    result.rollout = await run_staged(
        rollout,
        result.plan,
        reachable,
        result.members,
        spec=spec.rollout,
        suspended=spec.suspend,
        known_failed=known,
        inputs=staging,
    )
    result.releases += rollout.finish(reachable)
    merge_rollout(result, rollout, holding)
    if spec.suspend or staging.only:
        holding |= {t.cluster for t in departed}
    else:
        await run_rollout(result, new_rollout(), None, departed, holding)
    result.holding = frozenset(holding | set(result.unreachable))
    return result


async def settle_moves(
    result: StackResult,
    leaving: Sequence[Target],
    new_rollout: Callable[[], Rollout],
    holding: set[str],
    *,
    write: bool = True,
    on_left: Callable[[Sequence[Target]], Awaitable[None]] | None = None,
) -> None:
    """The leaving clusters of a placement move (see the module): uninstalled when the
    picked clusters are all Deployed, else kept with rows saying why. `write` False
    (suspended, `--stage`): nothing is written; they hold what they hold. `on_left`:
    called with them once uninstalled (the Stack's admission rule goes from there too)."""
    decision = result.placement
    if not leaving or decision is None or result.plan is None:
        return
    if not write:
        holding |= {t.cluster for t in leaving}
        return
    waiting = not_moved_yet(result, decision)
    if not waiting:
        await run_rollout(result, new_rollout(), None, leaving, holding)
        result.placement = replace(decision, leaving=())
        if on_left is not None:
            await on_left(leaving)
        return
    first = len(result.releases)
    await run_rollout(result, new_rollout(), result.plan, leaving, holding)
    note = (
        f"being replaced by {', '.join(decision.picked)} (targets.placement: "
        f"{decision.reason}); kept until its releases there are Deployed: {waiting}"
    )
    result.releases[first:] = [replace(r, message=note) for r in result.releases[first:]]
    holding |= {t.cluster for t in leaving}


def not_moved_yet(result: StackResult, decision: PlacementDecision) -> str:
    """Why the Stack is not yet on every picked cluster ("" when it is): the first of its
    releases there that is not Deployed in this pass."""
    assert result.plan is not None
    rows = {r.key: r for r in result.releases}
    for cluster in decision.picked:
        for release in result.plan.releases_for(cluster):
            row = rows.get(release.key)
            if row is None:
                return f"{release.key.name} on {cluster} was not reached in this pass"
            if row.state is not State.DEPLOYED:
                detail = f": {row.message}" if row.message else ""
                return f"{release.key.name} on {cluster} is {row.state.value}{detail}"
    return ""
