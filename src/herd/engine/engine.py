"""The engine both faces share: Stack → targets → plan → rollout → result.

`Engine.apply` resolves the Stack's targets from the cluster inventory, reads
`values.from` sources, builds the plan (add-ons prepended), materialises each target's
kubeconfig, and runs the rollout. Clusters that are no longer targeted but still hold
releases of this Stack are cleaned up in the same pass. `Engine.delete` removes every
release the Stack owns on every known cluster (or on the clusters given). `Engine.preview`
is `apply` without writes (`herd plan`). Spec errors surface as `SpecError` before any
helm call. Every result says which clusters still hold (or may hold) the Stack's
releases (`StackResult.holding`), so the caller can persist it and clean up a cluster
that departed while unreachable once it returns.

One engine per process: its `Gates` bound helm and clusters process-wide, and `manager`
("operator" or "cli") labels every release it installs.

Multi-tenancy (`herd.plan.tenancy`): `apply` takes the Stack's `Grants` (the operator's; None,
unrestricted, for the CLI). The grants' spec checks join the plan's spec errors; targets no
grant covers are not contacted at all (their rows are `NotGranted`, the release there, if
any, kept); the others are rolled out as the tenant (`herd.rollout.tenants`). `delete` takes
the same grants: every uninstall runs as the tenant, and a cluster no longer granted is
not contacted (`StackResult.denied`: orphaned, reported by the caller).

Ownership (`herd.plan.ownership`): each pass loads the Stack's record from the `OwnershipStore`
(the operator's on the management cluster, the CLI's in each downstream cluster), removes
only the leftovers it records, and saves the record after the pass (once, when it changed).
Callers: `herd.operator` (kopf handlers) and `herd.cli` (CI pipelines).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import replace
from functools import partial

from herd.addons.gpu.supply import read_supply
from herd.api.v1 import Stack
from herd.clusters.drift import DriftMemory
from herd.engine.checks import LiveProbe
from herd.engine.enforcement import drop_rules, enforce_rules
from herd.engine.moves import run_rollout, settle_moves, staged_pass
from herd.engine.owned import save_record, stack_ref
from herd.engine.planning import Readers, checked_plan
from herd.engine.previews import unfit_refused
from herd.engine.protocols import (
    AddOns,
    Inventory,
    LastGoodStore,
    OwnershipStore,
    Preview,
    SourcesReader,
    StackResult,
    ValuesReader,
)
from herd.engine.rollback import Rollbacks, rolled_back
from herd.engine.targets import (
    KEPT_MESSAGE,
    SupplyReader,
    departed_targets,
    kubeconfig_targets,
    not_granted_rows,
    place_targets,
    placement_notes,
)
from herd.helm.bundled import BUNDLED_REPO
from herd.helm.egress_guard import RepoGuard
from herd.helm.environment import HelmEnvironment
from herd.kube.journal import OperationJournal
from herd.plan.clusters import Cluster
from herd.plan.decide import DEFAULT_STUCK_SECONDS
from herd.plan.desired import StackPlan
from herd.plan.egress import EgressPolicy
from herd.plan.lastgood import MemoryLastGood
from herd.plan.ownership import MemoryOwnership, Owned, StackRef
from herd.plan.placement import Placed
from herd.plan.releases import ReleaseKey, owner_label
from herd.plan.retry import Deferral
from herd.plan.stages import Stage, assign_stages
from herd.plan.targets import resolve_targets
from herd.plan.tenancy import Grants, granted_clusters
from herd.rollout.actions import Settings
from herd.rollout.drift import preview_drift
from herd.rollout.gates import DEFAULT_LIMITS, Gates, Limits
from herd.rollout.scheduler import Progress, Rollout
from herd.rollout.staged import StageInputs
from herd.rollout.target import Target
from herd.rollout.tenants import TenantClusters

__all__ = [
    "KEPT_MESSAGE",
    "AddOns",
    "Engine",
    "Inventory",
    "OwnershipStore",
    "Preview",
    "SourcesReader",
    "StackResult",
    "ValuesReader",
    "not_granted_rows",
]

logger = logging.getLogger(__name__)
_NOT_PULLED = frozenset({BUNDLED_REPO})


class Engine:
    def __init__(
        self,
        inventory: Inventory,
        env: HelmEnvironment,
        *,
        limits: Limits = DEFAULT_LIMITS,
        values: ValuesReader | None = None,
        addons: AddOns | None = None,
        gates: Gates | None = None,
        manager: str = "operator",
        stuck_seconds: float = DEFAULT_STUCK_SECONDS,
        sources: SourcesReader | None = None,
        ownership: OwnershipStore | None = None,
        egress: EgressPolicy | None = None,
        drift: DriftMemory | None = None,
        gpu_supply: SupplyReader = read_supply,
        checks: LiveProbe | None = None,
        journal: OperationJournal | None = None,
        lastgood: LastGoodStore | None = None,
    ) -> None:
        self._journal = journal  # the operator's helm operation journal; None: the CLI
        self._gpu_supply = gpu_supply  # what targets.placement.pickN ranks clusters by
        # What the stages' checks ask (`herd.engine.checks`); by default without NeuVector.
        self._checks = checks or LiveProbe.on(env)
        self._drift = drift  # what drift checks recorded, process-wide; None: no checks
        self._sources = sources
        self._ownership: OwnershipStore = ownership or MemoryOwnership()
        self._egress = egress  # the deny list for bounded Stacks' repositories (`herd.plan.egress`)
        self._inventory = inventory
        self._env = env
        self._limits = limits
        self._values = values
        self._addons = addons
        self.gates = gates or Gates(limits.helm, limits.clusters)
        self._manager = manager
        self._stuck_seconds = stuck_seconds
        self._tenants = TenantClusters()  # tenant RBAC provisioned, per cluster and tenant
        self._rollbacks = Rollbacks(
            lastgood or MemoryLastGood(), self._ownership, env, self.gates, self._tenants
        )

    async def plan(
        self, stack: Stack, clusters: Sequence[Cluster] = (), grants: Grants | None = None
    ) -> StackPlan:
        """The checked plan (`herd.engine.planning.checked_plan`); raises SpecError."""
        readers = Readers(self._values, self._sources, self._addons)
        return await checked_plan(stack, clusters, grants, readers)

    async def apply(
        self,
        stack: Stack,
        on_progress: Progress | None = None,
        *,
        previous_targets: Collection[str] | None = None,
        held: Mapping[ReleaseKey, str] | None = None,
        force: bool = False,
        defer: Mapping[str, Deferral] | None = None,
        grants: Grants | None = None,
        staging: StageInputs | None = None,
        placed: Placed | None = None,
    ) -> StackResult:
        """Converge the Stack's targets; clean up the clusters it left. With `spec.rollout`,
        `spec.suspend` or `staging.only`, the pass is staged (`herd.rollout.staged`;
        `staging`: the persisted rollout status, the approval annotation and callbacks)
        and `StackResult.rollout` says where it stands (`drift_wait`: the next drift check).

        `grants`: what the Stack's namespace was granted (`herd.plan.tenancy`); None is
        unrestricted (the CLI: its limits are the RBAC of its kubeconfigs). Targets no
        grant covers are left untouched, their rows `NotGranted`; the Stack's own releases
        elsewhere go through the tenant identity and the render check.

        `previous_targets` (the operator's record of clusters that may hold the Stack's
        releases) narrows the clean-up to those; None checks every other ready cluster
        (the CLI's few). `held`: release -> config digest that failed permanently (not
        retried while unchanged). `force`: take over releases the other Herd face manages.
        `defer`: clusters in backoff, not contacted this pass (`herd.plan.retry.Deferral`).
        `placed`: the last pick, GPU need and leaving clusters (`herd.engine.moves`)."""
        result, reachable, departed, leaving = await self._resolve(
            stack, previous_targets, grants, placed
        )
        guard = self._guard(stack, grants)
        settings = self._settings(stack.namespace, stack.name, force, held, guard)
        placement = stack.spec.targets.placement
        settings = replace(settings, require_fit=placement is not None and placement.require_fit)
        ref = stack_ref(stack)
        kubeconfigs = {t.cluster: t.kubeconfig for t in (*reachable, *departed, *leaving)}
        owned = await self._ownership.load(ref, kubeconfigs)
        made: list[Rollout] = []

        def new_rollout() -> Rollout:
            made.append(self._rollout(settings, on_progress, defer, owned))
            return made[-1]

        # A cluster not granted is not contacted: what it holds stays as the record says.
        holding = {s.cluster_id for s in result.skipped if s.cluster_id not in result.denied}
        staging = await self._rollbacks.staging(stack, result, staging, ref, kubeconfigs)
        try:
            targets = (reachable, departed, leaving)
            await self._passes(
                stack, result, targets, new_rollout, holding=holding, staging=staging
            )
            await self._rollbacks.after_pass(result, ref, kubeconfigs)
            return result
        finally:  # what the pass installed is recorded even when it was cancelled midway
            placement_notes(result)
            extra = rolled_back(result)  # a rollback's rows, after the rollouts' own
            await save_record(self._ownership, ref, owned, made, kubeconfigs, extra=extra)
            result.drift_wait = self._drift_wait(settings.owner)

    async def _passes(
        self,
        stack: Stack,
        result: StackResult,
        targets: tuple[list[Target], list[Target], list[Target]],
        new_rollout: Callable[[], Rollout],
        *,
        holding: set[str],
        staging: StageInputs | None,
    ) -> None:
        """`apply`'s rollouts (staged or not), a placement move's leaving clusters
        (`herd.engine.moves`), then the Stack's admission rule (`herd.engine.enforcement`)
        unless nothing may be written (suspend, `--stage`)."""
        spec = stack.spec
        reachable, departed, leaving = targets
        only = bool(staging and staging.only)
        if spec.rollout is not None or spec.suspend or only:
            staging = staging or StageInputs()
            if staging.probe is None:
                staging = replace(staging, probe=self._checks.for_clusters(result.members))
            await staged_pass(
                result,
                reachable,
                departed,
                new_rollout=new_rollout,
                holding=holding,
                staging=staging,
            )
        else:
            for plan, some in ((result.plan, reachable), (None, departed)):
                await run_rollout(result, new_rollout(), plan, some, holding)
        write = not spec.suspend and not only
        left = partial(enforce_rules, stack, result, ())
        await settle_moves(result, leaving, new_rollout, holding, write=write, on_left=left)
        result.holding = frozenset(holding | set(result.unreachable))
        if write:
            await enforce_rules(stack, result, reachable, departed)

    def _drift_wait(self, owner: str) -> float | None:
        """Seconds until the Stack's next drift check (None: none is scheduled)."""
        return self._drift.wait(owner, time.time()) if self._drift is not None else None

    def _guard(self, stack: Stack, grants: Grants | None) -> RepoGuard | None:
        """The egress deny list for a bounded Stack's repositories; None: no check."""
        if self._egress is None or grants is None or grants.unrestricted:
            return None
        return RepoGuard.for_charts(self._egress, stack.spec.charts, skip=_NOT_PULLED)

    def stages(self, stack: Stack, clusters: Sequence[Cluster]) -> list[Stage]:
        """The Stack's stages over `clusters` (the implicit last one included)."""
        return assign_stages(stack.spec.rollout, clusters)

    async def delete(
        self,
        namespace: str,
        name: str,
        on_progress: Progress | None = None,
        *,
        only: Collection[str] | None = None,
        force: bool = False,
        grants: Grants | None = None,
        uid: str | None = None,
    ) -> StackResult:
        """Uninstall every release the Stack recorded on every known cluster, or on `only`.

        A cluster of `only` that the inventory no longer knows holds nothing any more
        (removing a cluster from the inventory is a way out of a stuck deletion). With
        bounded `grants`, every uninstall runs as the tenant, and a cluster no longer
        granted is not contacted: it is in `denied` (and `skipped`), its releases stay.
        """
        clusters = await self._inventory.clusters()
        if only is not None:
            clusters = [c for c in clusters if c.id in only]
        result = StackResult(None, clusters, [])
        usable: Sequence[Cluster] = clusters
        if grants is not None and not grants.unrestricted:
            usable, denied = granted_clusters(grants, clusters)
            result.skipped += denied
            result.denied = {s.cluster_id for s in denied}
        reachable = await kubeconfig_targets(
            self._inventory, self._limits.clusters, usable, result.skipped, grants
        )
        ref = StackRef(namespace, name, uid)
        kubeconfigs = {t.cluster: t.kubeconfig for t in reachable}
        owned = await self._ownership.load(ref, kubeconfigs)
        rollout = self._rollout(self._settings(namespace, name, force), on_progress, None, owned)
        try:
            result.releases = await rollout.apply(None, reachable)
            await drop_rules(namespace, name, result, reachable)
        finally:
            await save_record(self._ownership, ref, owned, [rollout], kubeconfigs)
        result.unreachable.update(rollout.unreachable)
        result.holding = frozenset(
            rollout.holding | set(result.unreachable) | {s.cluster_id for s in result.skipped}
        )
        return result

    async def forget(self, namespace: str, name: str, uid: str | None = None) -> None:
        """The Stack's deletion completed: drop its ownership record and its last good
        revisions (`TransientError` when a store cannot)."""
        await self._ownership.drop(StackRef(namespace, name, uid), {})
        await self._rollbacks.store.drop(StackRef(namespace, name, uid), {})

    async def rollback(self, stack: Stack, stage: str | None = None) -> StackResult:
        """`herd rollback`: the clusters of `stage` (None: every stage) back to their last
        good revisions now (`herd.engine.rollback`); their rows in `releases`."""
        result, reachable, _, _ = await self._resolve(stack, None)
        return await self._rollbacks.roll_back(stack, result, reachable, stage)

    async def preview(
        self,
        stack: Stack,
        *,
        previous_targets: Collection[str] | None = None,
        grants: Grants | None = None,
        drift: bool = False,
        placed: Placed | None = None,
    ) -> tuple[StackResult, list[Preview]]:
        """What `apply` would do, departed clusters included; no writes anywhere (`herd
        plan`, and the operator's `spec.mode: DryRun`, which passes what `apply` takes).
        `drift`: each release that needs no helm call is checked for drift now (read-only).
        Under `requireFit`, what Apply would refuse is `REFUSED` (`herd.engine.previews`)."""
        result, reachable, departed, leaving = await self._resolve(
            stack, previous_targets, grants, placed
        )
        kubeconfigs = {t.cluster: t.kubeconfig for t in (*reachable, *departed, *leaving)}
        owned = await self._ownership.load(stack_ref(stack), kubeconfigs)
        rollout = self._rollout(self._settings(stack.namespace, stack.name), None, None, owned)
        rows = [Preview(*row) for row in await rollout.decisions(result.plan, reachable)]
        rows += [Preview(*row) for row in await rollout.decisions(None, departed)]
        rows += [Preview(*row) for row in await rollout.decisions(result.plan, leaving)]
        rows = await unfit_refused(self._env, stack, reachable, rows)
        result.unreachable.update(rollout.unreachable)
        if drift and result.plan is not None:
            decided = [(r.key, r.desired, r.observed, r.decision) for r in rows]
            found = await preview_drift(result.plan, reachable, decided)
            rows = [replace(r, drift=found.get(r.key)) for r in rows]
        return result, rows

    async def _resolve(
        self,
        stack: Stack,
        previous_targets: Collection[str] | None,
        grants: Grants | None = None,
        placed: Placed | None = None,
    ) -> tuple[StackResult, list[Target], list[Target], list[Target]]:
        """Targets and plan (SpecError before anything else), the clusters left behind, and
        those a placement move is leaving (`herd.engine.moves`).

        A cluster the Stack no longer targets loses its releases in the same pass; one that
        is targeted but skipped (not ready, no kubeconfig) keeps them: it may come back. A
        departed cluster the caller knows may hold releases but that cannot be reached now
        is named in `unreachable` (so it stays in `holding`).
        """
        clusters = await self._inventory.clusters()
        resolution = resolve_targets(stack.spec.targets, clusters)
        plan = await self.plan(stack, resolution.clusters, grants)
        result = StackResult(plan, list(resolution.clusters), list(resolution.skipped))
        unusable = {s.cluster_id for s in resolution.skipped}
        result.members = [*resolution.clusters, *(c for c in clusters if c.id in unusable)]
        usable: Sequence[Cluster] = resolution.clusters
        if grants is not None and not grants.unrestricted:
            usable, denied = granted_clusters(grants, resolution.clusters)
            result.skipped += denied
            result.denied = {s.cluster_id for s in denied}
            result.releases += not_granted_rows(plan, denied)
        reachable = await kubeconfig_targets(
            self._inventory, self._limits.clusters, usable, result.skipped, grants
        )
        placement, leaving = stack.spec.targets.placement, list[Target]()
        if placement is not None and placement.pick_n is not None:
            reachable, leaving = await place_targets(
                placement, result, reachable, read=self._gpu_supply, placed=placed
            )
        departed = await departed_targets(
            self._inventory,
            self._limits.clusters,
            clusters,
            result,
            previous_targets=previous_targets,
            grants=grants,
        )
        return result, reachable, departed, leaving

    def _settings(
        self,
        namespace: str,
        name: str,
        force: bool = False,
        held: Mapping[ReleaseKey, str] | None = None,
        guard: RepoGuard | None = None,
    ) -> Settings:
        return Settings(
            guard=guard,
            owner=owner_label(namespace, name),
            manager=self._manager,
            force=force,
            stuck_seconds=self._stuck_seconds,
            held=dict(held or {}),
            drift=self._drift,
            journal=self._journal,
        )

    def _rollout(
        self,
        settings: Settings,
        on_progress: Progress | None,
        defer: Mapping[str, Deferral] | None,
        owned: Owned | None = None,
    ) -> Rollout:
        return Rollout(
            self._env,
            settings,
            gates=self.gates,
            on_progress=on_progress,
            defer=defer,
            tenants=self._tenants,
            owned=owned,
        )
