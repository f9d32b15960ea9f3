"""Carry out a plan: waves per cluster, clusters in parallel, bounded, cancellable.

For each cluster the rollout observes helm's releases once, decides per release
(`herd.plan.decide`), and acts: one wave at a time, the releases of a wave in parallel.
A release whose dependency did not deploy is `Skipped`, naming that dependency, while
independent releases and other clusters carry on. Releases this Stack owns that are no
longer desired are uninstalled afterwards, highest wave first. Every state change is
reported to `on_progress` so the operator can write status and the CLI draw progress.

Concurrency: `asyncio.TaskGroup`s under two semaphores (clusters at once per pass; helm
processes at once in the whole process, `Gates`), and one lock per (cluster, namespace,
release) in the process, so two Stacks or two passes never run helm on one release at
the same time. Cancelling the rollout cancels the tasks, and pyhelm3 terminates the helm
child processes.

Callers: `herd.engine`.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from herd.helm import ChartCache, ClusterHelm, HelmEnvironment, HelmFailure
from herd.plan import (
    Action,
    Decision,
    DesiredRelease,
    ObservedRelease,
    ReleaseKey,
    StackPlan,
    decide,
)
from herd.results import ReleaseResult, State
from herd.results import now as _now


@dataclass(frozen=True)
class Target:
    """A cluster to roll out to: its id and a kubeconfig file the caller keeps alive."""

    cluster: str
    kubeconfig: Path


@dataclass(frozen=True)
class Limits:
    clusters: int = 10  # clusters worked on at once
    helm: int = 8  # helm processes at once, all clusters together (memory of a small pod)


DEFAULT_LIMITS = Limits()

Progress = Callable[[ReleaseResult], Awaitable[None] | None]


class Gates:
    """What every rollout of a process shares: one lock per release, and the helm slots.

    The engine holds one `Gates`, so however many Stacks reconcile at once, helm never runs
    twice on one release and never more than `limits.helm` times in all.
    """

    def __init__(self, helm: int = DEFAULT_LIMITS.helm) -> None:
        self.helm = asyncio.Semaphore(helm)
        self._locks: dict[ReleaseKey, asyncio.Lock] = {}

    def release(self, key: ReleaseKey) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())


class Rollout:
    """One pass of one Stack over a set of clusters."""

    def __init__(
        self,
        env: HelmEnvironment,
        *,
        owner: str,
        limits: Limits = DEFAULT_LIMITS,
        gates: Gates | None = None,
        on_progress: Progress | None = None,
    ) -> None:
        self._env = env
        self._owner = owner
        self._cluster_slots = asyncio.Semaphore(limits.clusters)
        self._gates = gates or Gates(limits.helm)
        self._on_progress = on_progress
        self._cache = ChartCache(env)
        self.results: dict[ReleaseKey, ReleaseResult] = {}
        # Clusters whose releases could not be read (and so not changed): id -> reason.
        self.unreachable: dict[str, str] = {}

    @property
    def charts_pulled(self) -> int:
        return self._cache.pulled

    async def apply(self, plan: StackPlan | None, targets: Sequence[Target]) -> list[ReleaseResult]:
        """Converge every target on the plan; `plan=None` removes everything owned."""
        try:
            async with asyncio.TaskGroup() as group:
                for target in targets:
                    group.create_task(self._cluster(plan, target))
        finally:
            self._cache.close()
        return list(self.results.values())

    async def decisions(
        self, plan: StackPlan | None, targets: Sequence[Target]
    ) -> list[tuple[ReleaseKey, DesiredRelease | None, ObservedRelease | None, Decision]]:
        """What `apply` would do, per release, without changing anything (`herd plan`).

        A cluster that cannot be read is left out and named in `unreachable`.
        """
        out: list[tuple[ReleaseKey, DesiredRelease | None, ObservedRelease | None, Decision]] = []
        for target in targets:
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
                out.append((d.key, d, o, decide(d, o, self._owner)))
            for o in self._leftovers(observed, desired):
                key = ReleaseKey(target.cluster, o.namespace, o.name)
                out.append((key, None, o, decide(None, o, self._owner)))
        return out

    def _leftovers(
        self, observed: dict[tuple[str, str], ObservedRelease], desired: list[DesiredRelease]
    ) -> list[ObservedRelease]:
        """Releases this Stack owns that it no longer wants (never shared add-ons)."""
        wanted = {(d.key.namespace, d.key.name) for d in desired}
        return [
            o
            for o in observed.values()
            if o.owner == self._owner and (o.namespace, o.name) not in wanted
        ]

    # -- one cluster ---------------------------------------------------------------------

    async def _cluster(self, plan: StackPlan | None, target: Target) -> None:
        desired = plan.releases_for(target.cluster) if plan else []
        for d in desired:
            await self._report(ReleaseResult(d.key, d.chart.name, State.PENDING))
        async with self._cluster_slots:
            helm = ClusterHelm(self._env, target.cluster, target.kubeconfig)
            try:
                await self._converge(helm, plan, desired)
            except HelmFailure as failure:
                self.unreachable[target.cluster] = failure.message
                for d in desired:
                    if self.results[d.key].state in (State.PENDING, State.DEPLOYING):
                        await self._report(
                            replace(
                                self.results[d.key],
                                state=State.UNREACHABLE,
                                message=failure.message,
                                transient=True,
                            )
                        )
            finally:
                helm.close()

    async def _converge(
        self, helm: ClusterHelm, plan: StackPlan | None, desired: list[DesiredRelease]
    ) -> None:
        observed = await helm.observe()
        by_chart = {d.chart.name: d for d in desired}
        for wave in plan.waves if plan else ():
            async with asyncio.TaskGroup() as group:
                for name in wave:
                    release = by_chart[name]
                    blocker = self._blocker(plan, release)
                    if blocker:
                        await self._report(
                            replace(self.results[release.key], state=State.SKIPPED, message=blocker)
                        )
                        continue
                    found = observed.get((release.key.namespace, release.key.name))
                    group.create_task(self._release(helm, release, found))
        leftovers = self._leftovers(observed, desired)
        for level in sorted({o.wave for o in leftovers}, reverse=True):
            async with asyncio.TaskGroup() as group:
                for o in (o for o in leftovers if o.wave == level):
                    group.create_task(self._remove(helm, o))

    def _blocker(self, plan: StackPlan | None, release: DesiredRelease) -> str:
        """Why `release` cannot go ahead: the first dependency that is not deployed."""
        if plan is None:
            return ""
        for dependency in plan.graph.dependencies(release.chart.name):
            key = replace(
                release.key,
                namespace=plan.graph.charts[dependency].namespace,
                name=plan.graph.charts[dependency].release,
            )
            state = self.results[key].state
            if state is not State.DEPLOYED:
                return f"dependency {dependency} {state.lower()}"
        return ""

    async def _release(
        self, helm: ClusterHelm, desired: DesiredRelease, observed: ObservedRelease | None
    ) -> None:
        current = self.results[desired.key]
        async with self._gates.release(desired.key):
            try:
                decision = decide(desired, observed, self._owner)
                if decision.action is Action.RECOVER and observed is not None:
                    await self._report(
                        replace(
                            current,
                            state=State.DEPLOYING,
                            action=Action.RECOVER,
                            message=decision.reason,
                        )
                    )
                    async with self._gates.helm:
                        await helm.recover(observed)
                    observed = (await helm.observe()).get((observed.namespace, observed.name))
                    decision = decide(desired, observed, self._owner)
                current = await self._act(helm, desired, observed, decision.action, decision.reason)
            except HelmFailure as failure:
                current = replace(
                    self.results[desired.key],
                    state=State.FAILED,
                    message=failure.message,
                    transient=failure.transient,
                    finished=_now(),
                )
            await self._report(current)

    async def _act(
        self,
        helm: ClusterHelm,
        desired: DesiredRelease,
        observed: ObservedRelease | None,
        action: Action,
        reason: str,
    ) -> ReleaseResult:
        base = replace(
            self.results[desired.key], action=action, chart_version=desired.chart.version
        )
        if action is Action.NOTHING:
            return replace(
                base,
                state=State.DEPLOYED,
                message="",
                revision=observed.revision if observed else None,
            )
        if action is Action.CONFLICT:
            return replace(base, state=State.FAILED, message=reason, finished=_now())
        chart_dir = await self._cache.get(desired.chart)
        await self._report(replace(base, state=State.DEPLOYING, message=reason, started=_now()))
        async with self._gates.helm:
            started = _now()  # helm's own time, not the wait for a slot
            revision = await helm.install_or_upgrade(desired, chart_dir, self._owner)
        return replace(
            base,
            state=State.DEPLOYED,
            revision=revision,
            message="",
            started=started,
            finished=_now(),
        )

    async def _remove(self, helm: ClusterHelm, observed: ObservedRelease) -> None:
        key = ReleaseKey(helm.cluster, observed.namespace, observed.name)
        result = ReleaseResult(
            key,
            observed.chart,
            State.UNINSTALLING,
            action=Action.UNINSTALL,
            revision=observed.revision,
            started=_now(),
        )
        await self._report(result)
        async with self._gates.release(key):
            try:
                async with self._gates.helm:
                    await helm.uninstall(observed.namespace, observed.name)
                result = replace(result, state=State.UNINSTALLED, finished=_now())
            except HelmFailure as failure:
                result = replace(
                    result,
                    state=State.FAILED,
                    message=failure.message,
                    transient=failure.transient,
                    finished=_now(),
                )
        await self._report(result)

    async def _report(self, result: ReleaseResult) -> None:
        result = replace(result, updated=_now())
        self.results[result.key] = result
        if self._on_progress is not None:
            outcome = self._on_progress(result)
            if inspect.isawaitable(outcome):
                await outcome
