"""One rollout's results into a pass's `StackResult`: `run` (an unstaged rollout of a plan,
or of the removal) and `merge` (its unreachable clusters and what it holds).

Callers: `herd.engine.engine` (`apply`, its staged pass, `delete`).
"""

from __future__ import annotations

from collections.abc import Sequence

from herd.engine.protocols import StackResult
from herd.plan.desired import StackPlan
from herd.rollout.scheduler import Rollout
from herd.rollout.target import Target


async def run(
    result: StackResult,
    rollout: Rollout,
    plan: StackPlan | None,
    targets: Sequence[Target],
    holding: set[str],
) -> None:
    """One unstaged rollout of `plan` (None: remove) over `targets`, into `result`."""
    result.releases += await rollout.apply(plan, targets)
    merge(result, rollout, holding)


def merge(result: StackResult, rollout: Rollout, holding: set[str]) -> None:
    """A rollout's unreachable clusters into `result`, and what it holds into `holding`."""
    result.unreachable.update(rollout.unreachable)
    holding |= rollout.holding
