"""Fleet rollback, decided: which clusters, which releases, in which order, to what. Pure.

`spec.rollout.onFailure: Rollback` (`herd.api.rollout`): when a stage fails, its failed
clusters (`scope: Stage`), or also every cluster this rollout already moved (`scope:
Rollout`: the clusters of the stages before it and of the failed stage that are at the new
configuration), return to their last good revisions (`herd.plan.lastgood`):

- `rollback_clusters`: the clusters a failed stage rolls back; stages not reached are never
  in it.
- `reverse_waves`: the order on a cluster: the chart DAG's waves reversed, so a release's
  dependents are back before it is (a chain A <- B <- C rolls back C, then B, then A).
- `step`: one release's action from Herd's record and the fresh observation: `ROLL_BACK` to
  a recorded revision, `UNCHANGED` (already there, or not changed by this rollout), or
  `SKIP` with why (nothing recorded, release gone).
- `verify`: whether the stored revision is still the one Herd recorded (chart version,
  values digest, manifest digest): a release Secret is data whoever can write its
  namespace controls, so a forged or pruned revision is refused, never rolled back to.
- `passed`: the stages whose clusters' releases become the new last good (a stage that
  succeeded and whose soak is over: the rollout moved past it, or waits for its approval).

Callers: `herd.rollout.staged`, `herd.rollout.rollback`, `herd.engine` (the CLI's `herd
rollback`); table-tested in `tests/test_rollback.py`.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from herd.api.rollout import SCOPE_ROLLOUT
from herd.plan.lastgood import Good, target
from herd.plan.stages import ClusterState, Decision, RolloutState, Stage

HISTORY_GONE = "is no longer in the release's history (helm keeps the last 10 revisions)"


class Step(enum.StrEnum):
    ROLL_BACK = "rollback"
    UNCHANGED = "unchanged"
    SKIP = "skip"


@dataclass(frozen=True)
class ReleaseStep:
    step: Step
    good: Good | None
    message: str


def rollback_clusters(
    stages: Sequence[Stage], states: Mapping[str, ClusterState], failed: int, scope: str
) -> list[str]:
    """The clusters stage `failed` rolls back, in stage order: its failed clusters; with
    scope Rollout also every cluster of it and the stages before it that this rollout
    moved (at the current configuration)."""
    out = [c for c in stages[failed].clusters if states.get(c) is ClusterState.FAILED]
    if scope != SCOPE_ROLLOUT:
        return out
    moved = [
        c
        for stage in stages[: failed + 1]
        for c in stage.clusters
        if states.get(c) is ClusterState.DONE
    ]
    earlier_failed = [
        c
        for stage in stages[:failed]
        for c in stage.clusters
        if states.get(c) is ClusterState.FAILED
    ]
    return [*earlier_failed, *moved, *out]


def requested_clusters(stages: Sequence[Stage], stage: str | None, scope: str) -> list[str]:
    """`herd rollback [--stage S]`: the clusters of stage S (with scope Rollout, of the
    stages before it too); without a stage, every cluster of every stage."""
    names = [s.name for s in stages]
    if stage is None:
        return [c for s in stages for c in s.clusters]
    index = names.index(stage)
    chosen = stages[: index + 1] if scope == SCOPE_ROLLOUT else stages[index : index + 1]
    return [c for s in chosen for c in s.clusters]


def reverse_waves(waves: Sequence[Sequence[str]], charts: Iterable[str]) -> list[list[str]]:
    """`charts` in the chart DAG's waves, last wave first (dependents before dependencies)."""
    wanted = set(charts)
    reversed_waves = [[c for c in wave if c in wanted] for wave in reversed(waves)]
    return [wave for wave in reversed_waves if wave]


def step(
    entries: Sequence[Good], version: str, values: str, observed_revision: int | None
) -> ReleaseStep:
    """What to do with one release (`entries`: its record, newest first; `version` and
    `values`: what the rollout wants; `observed_revision`: its latest revision now)."""
    if not entries:
        return ReleaseStep(Step.SKIP, None, "no last good revision recorded: left as it is")
    good = target(entries, version, values)
    if good is None:
        return ReleaseStep(Step.UNCHANGED, entries[0], "not changed by this rollout")
    if observed_revision is None:
        return ReleaseStep(Step.SKIP, good, "the release is gone: nothing to roll back")
    if observed_revision == good.revision:
        return ReleaseStep(Step.UNCHANGED, good, f"already at revision {good.revision}")
    return ReleaseStep(Step.ROLL_BACK, good, "")


def verify(good: Good, version: str | None, values: str | None, manifest: str | None) -> str:
    """Why the stored revision `good.revision` may not be rolled back to ("" when it may):
    its chart version, values digest and manifest digest, as stored now, must be what Herd
    recorded (a record without a manifest digest vouches for nothing). `version` None: the
    revision is gone."""
    where = f"revision {good.revision}"
    if version is None:
        return f"{where} {HISTORY_GONE}"
    if version != good.version:
        return f"{where} is chart version {version}, not the recorded {good.version}"
    if values != good.values:
        return f"{where} holds other values than the ones Herd recorded"
    if good.manifest is None or manifest != good.manifest:
        return f"{where} holds another manifest than the one Herd recorded"
    return ""


def passed(decision: Decision, names: Sequence[str]) -> list[int]:
    """Indexes of the stages (named `names`, in order) passed at the current
    configuration: those before the stage the decision stands at, and that one too when
    the rollout is complete or waits only for its approval (its soak is over)."""
    if decision.state is RolloutState.COMPLETE:
        return list(range(len(names)))
    if decision.state is RolloutState.SUSPENDED or decision.stage not in names:
        return []
    index = list(names).index(decision.stage)
    return list(range(index + (decision.state is RolloutState.WAITING_FOR_APPROVAL)))
