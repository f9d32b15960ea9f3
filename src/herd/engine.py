"""The engine both faces share: Stack → targets → plan → rollout → result.

`Engine.apply` resolves the Stack's targets from the cluster inventory, reads
`values.from` sources, builds the plan (add-ons prepended), materialises each target's
kubeconfig, and runs the rollout. Clusters that are no longer targeted but still hold
releases of this Stack are cleaned up in the same pass. `Engine.delete` removes every
release the Stack owns on every known cluster. `Engine.preview` is `apply` without
writes (`herd plan`). Spec errors surface as `SpecError` before any helm call.

Callers: `herd.operator` (kopf handlers) and `herd.cli` (CI pipelines).
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from herd.api.v1 import ChartSpec, SkippedCluster, Stack, StackSpec
from herd.clusters.model import Cluster, ClusterUnavailable
from herd.clusters.targets import resolve_targets
from herd.errors import Problem, SpecError
from herd.helm import HelmEnvironment
from herd.plan import (
    Decision,
    DesiredRelease,
    ObservedRelease,
    ReleaseKey,
    SourceKey,
    StackPlan,
    Values,
    owner_label,
    plan_stack,
)
from herd.results import ReleaseResult
from herd.rollout import DEFAULT_LIMITS, Gates, Limits, Progress, Rollout, Target


class Inventory(Protocol):
    """Where clusters and their kubeconfigs come from (`herd.clusters.Inventory`)."""

    async def clusters(self) -> list[Cluster]: ...

    async def kubeconfig(self, cluster: Cluster) -> Path: ...


class ValuesReader(Protocol):
    """Reads `values.from` sources (ConfigMap/Secret keys in the Stack's namespace)."""

    async def read(self, namespace: str, spec: StackSpec) -> Mapping[SourceKey, Values]: ...


class AddOns(Protocol):
    """The add-on charts prepended to a Stack and their per-cluster values (`herd.addons`).

    `refresh` runs before each plan (it may read configuration and Secrets); `charts` and
    `cluster_values` are then pure lookups.
    """

    async def refresh(self) -> None: ...

    def charts(self, spec: StackSpec) -> list[ChartSpec]: ...

    def cluster_values(self, cluster: Cluster, chart: ChartSpec) -> Values: ...


@dataclass
class StackResult:
    """What one pass did: targets, skipped clusters and one result per release."""

    plan: StackPlan | None
    targets: list[Cluster]
    skipped: list[SkippedCluster]
    releases: list[ReleaseResult] = field(default_factory=list)
    # Clusters whose helm releases could not be read, so nothing there changed: id -> why.
    # For targets this also shows in their rows (Unreachable); for clusters the Stack left
    # (or all clusters, on delete) it is the only trace.
    unreachable: dict[str, str] = field(default_factory=dict)

    @property
    def chart_count(self) -> int:
        return len(self.plan.charts) if self.plan else 0


@dataclass(frozen=True)
class Preview:
    """One line of `herd plan`: the action for a release, and why."""

    key: ReleaseKey
    desired: DesiredRelease | None
    observed: ObservedRelease | None
    decision: Decision

    @property
    def action(self) -> str:
        return self.decision.action.value

    @property
    def reason(self) -> str:
        return self.decision.reason


class Engine:
    def __init__(
        self,
        inventory: Inventory,
        env: HelmEnvironment,
        *,
        limits: Limits = DEFAULT_LIMITS,
        values: ValuesReader | None = None,
        addons: AddOns | None = None,
    ) -> None:
        self._inventory = inventory
        self._env = env
        self._limits = limits
        self._values = values
        self._addons = addons
        self._gates = Gates(limits.helm)

    async def plan(self, stack: Stack, clusters: Sequence[Cluster] = ()) -> StackPlan:
        """The checked plan; raises SpecError with every problem found, values sources and
        graph together. Reads `values.from` when a reader is set."""
        problems: list[Problem] = []
        from_values = None
        if self._values is not None:
            try:
                from_values = await self._values.read(stack.namespace, stack.spec)
            except SpecError as error:
                problems += error.problems
        by_id = {c.id: c for c in clusters}
        addons = self._addons
        if addons is not None:
            await addons.refresh()

        def cluster_values(cluster_id: str, chart: ChartSpec) -> Values:
            if addons is None or cluster_id not in by_id:
                return {}
            return addons.cluster_values(by_id[cluster_id], chart)

        try:
            plan = plan_stack(
                stack.spec,
                addons=addons.charts(stack.spec) if addons else (),
                from_values=from_values,
                cluster_values=cluster_values if addons else None,
            )
        except SpecError as error:
            problems += error.problems
        if problems:
            raise SpecError(sorted(set(problems)))
        return plan

    async def apply(
        self,
        stack: Stack,
        on_progress: Progress | None = None,
        *,
        previous_targets: Collection[str] | None = None,
    ) -> StackResult:
        """Converge the Stack's targets; clean up the clusters it left.

        `previous_targets` (the operator's last status) narrows the clean-up to clusters the
        Stack targeted before; None checks every other ready cluster (the CLI's few).
        """
        result, reachable, departed = await self._resolve(stack, previous_targets)
        owner = owner_label(stack.namespace, stack.name)
        for plan, targets in ((result.plan, reachable), (None, departed)):
            rollout = self._rollout(owner, on_progress)
            result.releases += await rollout.apply(plan, targets)
            result.unreachable.update(rollout.unreachable)
        return result

    async def delete(
        self, namespace: str, name: str, on_progress: Progress | None = None
    ) -> StackResult:
        """Uninstall every release the Stack owns, on every known cluster."""
        clusters = await self._inventory.clusters()
        result = StackResult(None, clusters, [])
        reachable = await self._targets(clusters, result.skipped)
        rollout = self._rollout(owner_label(namespace, name), on_progress)
        result.releases = await rollout.apply(None, reachable)
        result.unreachable.update(rollout.unreachable)
        return result

    async def preview(self, stack: Stack) -> tuple[StackResult, list[Preview]]:
        """What `apply` would do, departed clusters included; no writes anywhere."""
        result, reachable, departed = await self._resolve(stack, None)
        rollout = self._rollout(owner_label(stack.namespace, stack.name), None)
        rows = [Preview(*row) for row in await rollout.decisions(result.plan, reachable)]
        rows += [Preview(*row) for row in await rollout.decisions(None, departed)]
        result.unreachable.update(rollout.unreachable)
        return result, rows

    async def _resolve(
        self, stack: Stack, previous_targets: Collection[str] | None
    ) -> tuple[StackResult, list[Target], list[Target]]:
        """Targets and plan (SpecError before anything else), and the clusters left behind.

        A cluster the Stack no longer targets loses its releases in the same pass; one that
        is targeted but skipped (not ready, no kubeconfig) keeps them: it may come back.
        """
        clusters = await self._inventory.clusters()
        resolution = resolve_targets(stack.spec.targets, clusters)
        plan = await self.plan(stack, resolution.clusters)
        result = StackResult(plan, list(resolution.clusters), list(resolution.skipped))
        keep = {c.id for c in resolution.clusters} | {s.cluster_id for s in resolution.skipped}
        keep |= {c.name for c in clusters if c.id in keep}
        left = [
            c
            for c in clusters
            if c.ready
            and c.id not in keep
            and c.name not in keep
            and (previous_targets is None or c.id in previous_targets)
        ]
        reachable = await self._targets(resolution.clusters, result.skipped)
        departed = await self._targets(left, [])
        return result, reachable, departed

    def _rollout(self, owner: str, on_progress: Progress | None) -> Rollout:
        return Rollout(
            self._env, owner=owner, limits=self._limits, gates=self._gates, on_progress=on_progress
        )

    async def _targets(
        self, clusters: Sequence[Cluster], skipped: list[SkippedCluster]
    ) -> list[Target]:
        """Kubeconfig files for `clusters` (fetched in parallel); unavailable ones go to
        `skipped`, which stays sorted by cluster id."""
        slots = asyncio.Semaphore(self._limits.clusters)

        async def one(cluster: Cluster) -> Target | None:
            async with slots:
                try:
                    return Target(cluster.id, await self._inventory.kubeconfig(cluster))
                except ClusterUnavailable as unavailable:
                    skipped.append(unavailable.skipped())
                    return None

        found = await asyncio.gather(*(one(c) for c in clusters))
        skipped.sort(key=lambda s: s.cluster_id)
        return [target for target in found if target is not None]
