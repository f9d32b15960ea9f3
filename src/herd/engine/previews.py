"""`Engine.preview`'s rows under `targets.placement.requireFit`: a release Apply would
refuse (its GPU requests cannot fit its cluster) is decided `REFUSED`, with Apply's words
(`herd.rollout.fit_preview`), so `herd plan` and `spec.mode: DryRun` show it.
Callers: `herd.engine.engine` (`Engine.preview`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from herd.api.v1 import Stack
from herd.engine.protocols import Preview
from herd.helm.environment import HelmEnvironment
from herd.plan.decide import Action, Decision
from herd.rollout.fit_preview import refused_by_fit
from herd.rollout.target import Target


async def unfit_refused(
    env: HelmEnvironment, stack: Stack, targets: Sequence[Target], rows: list[Preview]
) -> list[Preview]:
    """`rows`, each release `requireFit` would refuse on `targets` made `REFUSED`."""
    placement = stack.spec.targets.placement
    if placement is None or not placement.require_fit:
        return rows
    found = await refused_by_fit(env, targets, [(r.desired, r.observed, r.decision) for r in rows])
    return [
        replace(r, decision=Decision(Action.REFUSED, found[r.key])) if r.key in found else r
        for r in rows
    ]
