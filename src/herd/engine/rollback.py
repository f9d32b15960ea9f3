"""The engine's side of fleet rollback: the last good record around a staged pass, and
`herd rollback` (the CLI's).

- `rollback_inputs`: before a staged pass of a Stack with `spec.rollout`, its last good
  record (`herd.engine.protocols.LastGoodStore`) and, with `onFailure: Rollback`, the
  executor (`herd.rollout.rollback.Rollback`), for `herd.rollout.staged`;
- `after_pass`: the pass's rollback rows replace the rows of the releases they rolled back,
  and the new last good record is saved (once, when it changed);
- `roll_back`: `herd rollback STACK [--stage S]`: the clusters of stage S (with `scope:
  Rollout`, of the stages up to S too; without `--stage`, every stage) returned to their
  last good revisions now, whatever the rollout's state.

Callers: `herd.engine.engine`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from herd.api.rollout import SCOPE_STAGE
from herd.api.v1 import Stack
from herd.engine.owned import save_record, stack_ref
from herd.engine.protocols import LastGoodStore, OwnershipStore, StackResult
from herd.errors import Problem, SpecError
from herd.helm.environment import HelmEnvironment
from herd.plan.desired import StackPlan
from herd.plan.ownership import StackRef
from herd.plan.results import ReleaseResult
from herd.plan.rollback import requested_clusters
from herd.plan.stages import assign_stages
from herd.rollout.gates import Gates
from herd.rollout.rollback import Rollback
from herd.rollout.staged import StageInputs
from herd.rollout.staged_rollback import RollbackInputs
from herd.rollout.target import Target
from herd.rollout.tenants import TenantClusters


def generation(stack: Stack) -> int:
    """The Stack's spec generation (0 for a Stack file, which has none)."""
    value = stack.metadata.get("generation")
    return value if isinstance(value, int) and value >= 0 else 0


class Rollbacks:
    """The engine's rollback parts: its last good store, and what the executor needs."""

    def __init__(
        self,
        store: LastGoodStore,
        ownership: OwnershipStore,
        env: HelmEnvironment,
        gates: Gates,
        tenants: TenantClusters,
    ) -> None:
        self.store = store
        self._ownership = ownership
        self._env, self._gates, self._tenants = env, gates, tenants

    async def staging(
        self,
        stack: Stack,
        result: StackResult,
        staging: StageInputs | None,
        ref: StackRef,
        kubeconfigs: Mapping[str, Path],
    ) -> StageInputs | None:
        """A staged pass's inputs with its rollback inputs (`inputs`); as given without
        `spec.rollout`."""
        if stack.spec.rollout is None or result.plan is None:
            return staging
        rollback = await self.inputs(stack, result.plan, ref, kubeconfigs)
        return replace(staging or StageInputs(), rollback=rollback)

    async def inputs(
        self, stack: Stack, plan: StackPlan, ref: StackRef, kubeconfigs: Mapping[str, Path]
    ) -> RollbackInputs | None:
        """For a staged pass: None without `spec.rollout` (nothing passes, nothing rolls back)."""
        rollout = stack.spec.rollout
        if rollout is None:
            return None
        record = await self.store.load(ref, kubeconfigs)
        executor = None
        if rollout.rollback_scope is not None:
            executor = Rollback(self._env, self._gates, self._tenants, record)
        return RollbackInputs(record, generation(stack), plan, executor)

    async def after_pass(
        self, result: StackResult, ref: StackRef, kubeconfigs: Mapping[str, Path]
    ) -> list[ReleaseResult]:
        """The rollback rows in `result.releases`, the new record saved; returns the rows."""
        outcome = result.rollout
        if outcome is None:
            return []
        result.releases = merged(result.releases, outcome.rollback)
        if outcome.good is not None:
            await self.store.save(ref, outcome.good, kubeconfigs)
        return outcome.rollback

    async def roll_back(
        self, stack: Stack, result: StackResult, targets: Sequence[Target], stage: str | None
    ) -> StackResult:
        """`herd rollback`: `result` with the rows of every release of the clusters chosen;
        the ownership record takes the new revisions."""
        assert result.plan is not None
        spec = stack.spec.rollout
        stages = assign_stages(spec, result.members)
        names = [s.name for s in stages]
        if stage is not None and stage not in names:
            why = f"no stage named {stage!r}; the Stack's stages: {', '.join(names)}"
            raise SpecError([Problem("--stage", why)])
        scope = (spec.scope if spec is not None else None) or SCOPE_STAGE
        clusters = requested_clusters(stages, stage, scope)
        ref, kubeconfigs = stack_ref(stack), {t.cluster: t.kubeconfig for t in targets}
        owned = await self._ownership.load(ref, kubeconfigs)
        record = await self.store.load(ref, kubeconfigs)
        executor = Rollback(self._env, self._gates, self._tenants, record)
        why = f"herd rollback{f' --stage {stage}' if stage else ''}"
        done = await executor.run(result.plan, {t.cluster: t for t in targets}, clusters, why)
        result.releases += [row for cluster in done for row in cluster.rows]
        await save_record(self._ownership, ref, owned, [], kubeconfigs, extra=result.releases)
        return result


def rolled_back(result: StackResult) -> Sequence[ReleaseResult]:
    """The rows of the rollback a staged pass made (none without one)."""
    return result.rollout.rollback if result.rollout is not None else ()


def merged(rows: Sequence[ReleaseResult], rolled: Sequence[ReleaseResult]) -> list[ReleaseResult]:
    """`rows` with each release a rollback row speaks of replaced by that row."""
    by_key = {r.key: r for r in rolled}
    return [by_key.pop(r.key, r) for r in rows] + list(by_key.values())
