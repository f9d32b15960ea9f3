"""Carry out a plan: each cluster supervised, each release as soon as its dependencies are.

Per cluster: one observation of helm's releases, then one task per release, which starts
its chart pull when that observation says it needs helm, waits for its own dependencies
only, then a helm slot (`Gates`); one whose dependency did not deploy is `Skipped`.
Releases no longer desired are uninstalled afterwards, highest wave first
(`herd.rollout.leftovers`), only those the ownership record holds (`herd.plan.ownership`),
as the Stack's identity; others labelled for the Stack stay, their row saying why. One
release's steps: `herd.rollout.actions`. A cluster in its backoff
(`herd.plan.retry.Deferral`) is not contacted: its rows repeat its failed pass's.

A staged pass (`herd.rollout.staged`) calls `run` per stage with its `Admission`
(`maxConcurrent`, failure budget), and with `hold` for the clusters not to be written
(later stages, suspend): only observed, a release `Deployed` at its desired config, else
`Pending` saying what it waits for. `finish` ends the pass; `apply` is `run` + `finish`.

Then each cluster's drift (`herd.rollout.drift`; corrected only where written). Faults stay
where they happen: a cluster task's exception becomes its results, never a sibling's.
`on_progress` (sync or async) hears every change; its exceptions are logged. Cancelling
the rollout ends the helm processes.

Callers: `herd.engine.engine`.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import replace

from herd.errors import TransientError, describe
from herd.helm.chart_cache import ChartCache
from herd.helm.client import ClusterHelm
from herd.helm.environment import HelmEnvironment
from herd.helm.failures import HelmFailure
from herd.plan.decide import Action, Decision
from herd.plan.desired import StackPlan, blocked_by
from herd.plan.ownership import Leftover, LeftoverDecision, Owned, release_id
from herd.plan.releases import DesiredRelease, ObservedRelease, ReleaseKey
from herd.plan.results import ReleaseResult, State
from herd.plan.results import now as _now
from herd.plan.retry import Deferral
from herd.plan.tenancy import helm_identity
from herd.rollout.actions import ReleaseActions, Settings
from herd.rollout.admission import Admission
from herd.rollout.drift import DriftStep
from herd.rollout.gates import DEFAULT_LIMITS, Gates
from herd.rollout.leftovers import leftovers_on, remove_leftovers
from herd.rollout.target import Target
from herd.rollout.tenants import RenderCheck, TenantClusters

logger = logging.getLogger(__name__)

Progress = Callable[[ReleaseResult], Awaitable[None] | None]
_GONE = (State.UNINSTALLED,)
_FAILED = (State.FAILED, State.UNREACHABLE, State.SKIPPED)


PreviewRow = tuple[ReleaseKey, DesiredRelease | None, ObservedRelease | None, Decision]


class Rollout:
    """One pass of one Stack over a set of clusters.

    After `apply`: `results` (one per release), `unreachable` (cluster id -> why its
    releases could not be read) and `holding` (clusters that still hold, or may hold,
    releases of this Stack).
    """

    def __init__(
        self,
        env: HelmEnvironment,
        settings: Settings,
        *,
        gates: Gates | None = None,
        on_progress: Progress | None = None,
        defer: Mapping[str, Deferral] | None = None,
        tenants: TenantClusters | None = None,
        owned: Owned | None = None,
    ) -> None:
        self._env = env
        self.owned = owned or Owned()  # the Stack's ownership record, as the pass began
        self._tenants = tenants or TenantClusters()
        self._settings = settings
        self._gates = gates or Gates(DEFAULT_LIMITS.helm, DEFAULT_LIMITS.clusters)
        self._on_progress = on_progress
        self._defer = dict(defer or {})
        self._cache = ChartCache(env, slot=self._gates.slot, guard=settings.guard)
        self._actions = ReleaseActions(
            self._gates, self._cache, settings, self._report, lambda key: self.results[key]
        )
        self.results: dict[ReleaseKey, ReleaseResult] = {}
        self._drift = DriftStep(settings, self._report, self.owned)
        self.unreachable: dict[str, str] = {}
        self.holding: set[str] = set()
        self._owned: set[ReleaseKey] = set()  # recorded releases of this Stack seen at the start
        self._left: set[ReleaseKey] = set()  # leftovers left in place: reported, no failure
        self.observed: dict[str, set[str]] = {}  # cluster -> release ids there (read this pass)
        self._shared: set[ReleaseKey] = set()  # add-on releases: no Stack's own

    async def apply(self, plan: StackPlan | None, targets: Sequence[Target]) -> list[ReleaseResult]:
        """Converge every target on the plan; `plan=None` removes everything owned."""
        try:
            await self.run(plan, targets)
        finally:
            self._cache.close()
        return self.finish(targets)

    async def run(
        self,
        plan: StackPlan | None,
        targets: Sequence[Target],
        *,
        admission: Admission | None = None,
        hold: str = "",
    ) -> None:
        """One group of targets (a stage) on the plan; call `finish` after the last group.

        `admission` bounds the group's clusters in flight and stops new ones past the
        failure budget (`herd.rollout.admission`). `hold`: the targets are only observed,
        nothing is written there; their rows say `hold` (what they wait for)."""
        async with asyncio.TaskGroup() as group:
            for target in targets:
                group.create_task(self._supervised(plan, target, admission, hold))

    def finish(self, targets: Sequence[Target]) -> list[ReleaseResult]:
        """After the last `run`: drop the pass's charts, settle `holding`, the results."""
        self._cache.close()
        self._settle_holding(targets)
        return list(self.results.values())

    @property
    def deferred(self) -> Mapping[str, Deferral]:
        """Clusters in backoff, not contacted this pass, and why each failed last."""
        return self._defer

    @property
    def held(self) -> Collection[ReleaseKey]:
        """Releases whose last attempt with this config failed permanently."""
        return self._settings.held.keys()

    @property
    def shared(self) -> frozenset[ReleaseKey]:
        """Shared add-on releases of the pass: never a Stack's own."""
        return frozenset(self._shared)

    def cluster_failed(self, cluster: str) -> bool:
        """Whether a release of `cluster` failed, was skipped or could not be reached."""
        return cluster in self.unreachable or any(
            r.state in _FAILED
            for r in self.results.values()
            if r.key.cluster == cluster and r.key not in self._left
        )

    async def decisions(
        self, plan: StackPlan | None, targets: Sequence[Target]
    ) -> list[PreviewRow]:
        """What `apply` would do, per release, changing nothing (`herd plan`); a cluster
        that cannot be read is left out and named in `unreachable`."""
        out: list[PreviewRow] = []
        for target in targets:
            if target.cluster in self._defer:
                self.unreachable[target.cluster] = self._defer[target.cluster].message
                continue
            helm = ClusterHelm(self._env, target.cluster, target.kubeconfig)
            try:
                observed = await helm.observe()
            except HelmFailure as failure:
                self.unreachable[target.cluster] = failure.message
                continue
            finally:
                helm.close()
            desired = plan.releases_for(target.cluster) if plan else []
            for d in desired:
                o = observed.get((d.key.namespace, d.key.name))
                out.append((d.key, d, o, self._actions.decide(d, o, fresh=True)))
            for o, found in leftovers_on(
                target, observed, desired, owner=self._settings.owner, owned=self.owned
            ):
                key = ReleaseKey(target.cluster, o.namespace, o.name)
                decision = (
                    self._actions.decide(None, o, fresh=True, key=key)
                    if found.verdict is Leftover.REMOVE
                    else Decision(Action.NOTHING, found.message)
                )
                out.append((key, None, o, decision))
        return out

    def _seen(
        self, cluster: str, observed: dict[tuple[str, str], ObservedRelease], *, hold: bool
    ) -> None:
        """Note a cluster's observation: which recorded releases are there. `hold`: the
        cluster is only observed, so it holds what it holds (a written one is settled by
        its results)."""
        self.observed[cluster] = {release_id(ns, name) for ns, name in observed}
        recorded = self.owned.on(cluster)
        owned = {
            ReleaseKey(cluster, ns, name)
            for ns, name in observed
            if release_id(ns, name) in recorded
        }
        self._owned |= owned
        if owned and hold:
            self.holding.add(cluster)

    # -- one cluster, supervised -----------------------------------------------------------

    async def _supervised(
        self,
        plan: StackPlan | None,
        target: Target,
        admission: Admission | None = None,
        hold: str = "",
    ) -> None:
        desired = plan.releases_for(target.cluster) if plan else []
        self._shared |= {d.key for d in desired if d.owner is not None}
        try:
            for d in desired:
                await self._report(
                    ReleaseResult(d.key, d.chart.name, State.PENDING, config=d.attempt)
                )
            if target.cluster in self._defer:
                await self._deferred(target.cluster, desired, self._defer[target.cluster])
                return
            if hold:
                await self._observe_only(plan, target, desired, hold)
                return
            if admission is None:
                await self._write(plan, target, desired)
                return
            async with admission.slot(target.cluster) as refused:
                if refused:
                    await self._observe_only(plan, target, desired, refused)
                    return
                failed = True  # an exception out of the cluster's work is its failure
                try:
                    await self._write(plan, target, desired)
                    failed = self.cluster_failed(target.cluster)
                finally:
                    admission.finished(target.cluster, failed)
        except HelmFailure as failure:
            await self._unreachable(target.cluster, desired, failure.message)
        except Exception as error:  # a bug here must stay this cluster's failure
            logger.exception("Unexpected error in the rollout on cluster %s", target.cluster)
            message = describe(error, cluster=target.cluster)
            self.holding.add(target.cluster)
            for d in desired:
                if self.results[d.key].state in (State.PENDING, State.DEPLOYING):
                    await self._fail(d.key, message)

    async def _observe_only(
        self, plan: StackPlan | None, target: Target, desired: list[DesiredRelease], hold: str
    ) -> None:
        """Read the cluster's releases and say where each stands; write nothing. A release
        at its desired config is Deployed; any other waits, its row saying for what."""
        async with self._gates.clusters:
            helm = ClusterHelm(self._env, target.cluster, target.kubeconfig)
            try:
                observed = await helm.observe()
            finally:
                helm.close()
        self._seen(target.cluster, observed, hold=True)
        for d in desired:
            found = observed.get((d.key.namespace, d.key.name))
            decision = self._actions.decide(d, found, fresh=False)
            if decision.action is Action.NOTHING:
                revision = found.revision if found else None
                await self._report(
                    replace(self.results[d.key], state=State.DEPLOYED, revision=revision)
                )
            else:
                message = f"{hold} (then: {decision.action.value}, {decision.reason})"
                await self._report(replace(self.results[d.key], message=message))
        await self._drift.run(plan, target, desired, self.results)

    async def _write(
        self, plan: StackPlan | None, target: Target, desired: list[DesiredRelease]
    ) -> None:
        async with self._gates.clusters:
            identity = helm_identity(target.grants) if target.grants else None
            check = None
            if target.grants is not None and identity is not None:
                own = {d.key.namespace for d in desired if d.owner is None}
                try:
                    check = await self._tenants.prepare(
                        target.cluster, target.kubeconfig, target.grants, own
                    )
                except TransientError as error:
                    await self._unreachable(
                        target.cluster, desired, f"cannot set up the tenant's RBAC: {error}"
                    )
                    return
            helm = ClusterHelm(self._env, target.cluster, target.kubeconfig)
            tenant = None if identity is None else ClusterHelm(
                self._env, target.cluster, target.kubeconfig, identity=identity)  # fmt: skip
            try:
                await self._cluster(helm, plan, target, desired, tenant=tenant, check=check)
            finally:
                helm.close()
                if tenant is not None:
                    tenant.close()

    async def _fail(self, key: ReleaseKey, message: str) -> None:
        # A release a bug stopped: Failed, transient (the next pass tries again).
        row, now = self.results[key], _now()
        await self._report(replace(row, state=State.FAILED, message=message, transient=True,
                                   finished=now))  # fmt: skip

    async def _deferred(
        self, cluster: str, desired: list[DesiredRelease], deferral: Deferral
    ) -> None:
        """A cluster in its backoff is not contacted. Its rows say what its failed pass
        said, and when it is retried; Unreachable only if the cluster did not answer."""
        if deferral.why is not None:
            await self._unreachable(cluster, desired, deferral.message)
            return
        self.holding.add(cluster)  # not read this pass: it may hold what it held
        last = {r.key: r for r in deferral.rows}
        for d in desired:
            row = last.get(d.key)
            if row is not None and row.config == d.attempt:
                await self._report(deferral.row(row))
            else:
                message = f"waiting for the cluster, {deferral.message}"
                await self._report(replace(self.results[d.key], message=message))

    async def _unreachable(self, cluster: str, desired: list[DesiredRelease], why: str) -> None:
        self.unreachable[cluster] = why
        self.holding.add(cluster)
        for d in desired:
            if self.results[d.key].state in (State.PENDING, State.DEPLOYING):
                await self._report(
                    replace(
                        self.results[d.key], state=State.UNREACHABLE, message=why, transient=True
                    )
                )

    async def _cluster(
        self,
        helm: ClusterHelm,
        plan: StackPlan | None,
        target: Target,
        desired: list[DesiredRelease],
        *,
        tenant: ClusterHelm | None = None,
        check: RenderCheck | None = None,
    ) -> None:
        """`tenant` (with `check`): the helm of a bounded Stack's own releases, and of
        every uninstall of a leftover (the stored hooks checked first)."""
        observed = await helm.observe()  # labels only, as the kubeconfig's identity
        self._seen(helm.cluster, observed, hold=False)
        if plan is not None:
            await self._releases(helm, plan, desired, observed, tenant=tenant, check=check)
            await self._drift.run(plan, target, desired, self.results, write=True)
        found = leftovers_on(
            target, observed, desired, owner=self._settings.owner, owned=self.owned
        )
        for o, why in found:
            if why.verdict is not Leftover.REMOVE:
                await self._kept(ReleaseKey(helm.cluster, o.namespace, o.name), o, why)
        removable = [o for o, why in found if why.verdict is Leftover.REMOVE]
        recorded = self.owned.on(helm.cluster)
        await remove_leftovers(self._actions, helm, removable, recorded, tenant=tenant, check=check)

    async def _kept(self, key: ReleaseKey, o: ObservedRelease, why: LeftoverDecision) -> None:
        """A leftover Herd may not remove: left in place, its row says why."""
        self._left.add(key)
        await self._report(
            ReleaseResult(key, o.chart, State.SKIPPED, revision=o.revision, message=why.message)
        )

    async def _releases(
        self,
        helm: ClusterHelm,
        plan: StackPlan,
        desired: list[DesiredRelease],
        observed: dict[tuple[str, str], ObservedRelease],
        *,
        tenant: ClusterHelm | None = None,
        check: RenderCheck | None = None,
    ) -> None:
        """One task per release; each waits for its own dependencies only. A bounded
        Stack's own releases go through `tenant` and `check`; shared add-ons do not."""
        done = {d.chart.name: asyncio.Event() for d in desired}

        async def one(release: DesiredRelease) -> None:
            found = observed.get((release.key.namespace, release.key.name))
            if self._actions.needs_helm(release, found):  # pulled while its dependencies run
                self._env.prepare()
                self._cache.prefetch(release.chart, release.source)
            try:
                for dependency in plan.graph.dependencies(release.chart.name):
                    await done[dependency].wait()
                blocker = self._blocker(plan, release)
                if blocker:
                    await self._report(
                        replace(self.results[release.key], state=State.SKIPPED, message=blocker)
                    )
                    return
                # The Stack's add-on releases (its dashboards) keep the kubeconfig's identity.
                as_tenant = check is None or check.runs_as_tenant(release.key.namespace)
                if release.owner is None and tenant is not None and as_tenant:
                    await self._actions.converge(tenant, release, found, check)
                else:
                    await self._actions.converge(helm, release, found)
            except Exception as error:  # a bug stays this release's failure
                logger.exception("Unexpected error scheduling release %s", release.key)
                await self._fail(release.key, describe(error, cluster=helm.cluster))
            finally:
                done[release.chart.name].set()

        async with asyncio.TaskGroup() as group:
            for release in desired:
                group.create_task(one(release))

    def _blocker(self, plan: StackPlan, release: DesiredRelease) -> str:
        """Why `release` cannot go ahead: the first dependency that is not deployed."""
        states = {}
        for dependency in plan.graph.dependencies(release.chart.name):
            spec = plan.graph.charts[dependency]
            key = replace(release.key, namespace=spec.namespace, name=spec.release)
            states[dependency] = self.results[key].state.value
        return blocked_by(plan, release.chart.name, states)

    # -- bookkeeping -----------------------------------------------------------------------

    def _settle_holding(self, targets: Sequence[Target]) -> None:
        """Which clusters may still hold this Stack's releases after the pass."""
        clusters = {t.cluster for t in targets}
        for result in self.results.values():
            cluster = result.key.cluster
            if cluster not in clusters or result.state in _GONE:
                continue
            acted = result.action in (Action.INSTALL, Action.UPGRADE, Action.RECOVER)
            if (result.key in self._owned or acted) and result.key not in self._shared:
                self.holding.add(cluster)

    async def _report(self, result: ReleaseResult) -> None:
        result = replace(result, updated=_now())
        self.results[result.key] = result
        if self._on_progress is None:
            return
        try:
            outcome = self._on_progress(result)
            if inspect.isawaitable(outcome):
                await outcome
        except Exception:  # a progress/status failure never cancels helm work (C4)
            logger.exception("Progress callback failed for release %s; going on", result.key)
