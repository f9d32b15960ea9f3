"""One release's steps: decide from a fresh observation under its lock, then act.

`ReleaseActions.converge` brings one desired release to its desired state, and
`ReleaseActions.remove` uninstalls one release the Stack no longer wants. A tenant's
release is render-checked before an install or upgrade as helm will run it (upgrade or
install, hooks, `lookup` as the tenant); before an uninstall, the stored release's hooks
are checked against the grants, and skipped (`--no-hooks`, said in the row) when they fail,
cannot be read, or the latest revision is not the one Herd recorded (`herd.plan.ownership`).
Both decide first from the pass's observation (a no-op pass reads nothing more). When there is
something to do they take the release's lock, re-read that release's helm Secrets
(`ClusterHelm.observe_release`), decide again (`herd.plan.decide.decide`, with the clock: a
pending-* release is stuck only when older than its timeout plus `stuck_seconds`,
otherwise a live actor owns it and nothing is done, unless the operator's journal proves
its actor gone: `herd.plan.journal`), and only then run helm, journaled (`_journaled`).

Every outcome, expected or not, ends as this release's result; nothing raises out.
Callers: `herd.rollout.scheduler`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from herd.addons.gpu.fit import fit_refusal, watch_fit
from herd.api.charts import ChartSpec
from herd.clusters.drift import DriftMemory
from herd.errors import describe
from herd.helm.chart_cache import ChartCache
from herd.helm.chart_crds import Crd, crd_note
from herd.helm.client import ClusterHelm
from herd.helm.crd_apply import CrdStep
from herd.helm.failures import HelmFailure
from herd.kube.journal import OperationJournal
from herd.names import LABEL_CONFIG
from herd.plan.decide import DEFAULT_STUCK_SECONDS, HELD_MESSAGE, PENDING, Action, Decision, decide
from herd.plan.journal import deploying, recovering, removing
from herd.plan.ownership import pinned
from herd.plan.releases import DesiredRelease, ObservedRelease, ReleaseKey
from herd.plan.results import ReleaseResult, State
from herd.plan.results import now as _now
from herd.rollout.gates import Draining, Gates
from herd.rollout.helmtest import chart_test
from herd.rollout.tenants import RenderCheck, calls_lookup, checked_render, hooks_refused

__all__ = ["ReleaseActions", "Settings", "calls_lookup"]

logger = logging.getLogger(__name__)
_NO_HELM = (Action.NOTHING, Action.CONFLICT, Action.HELD, Action.WAIT, Action.INVALID)


@dataclass(frozen=True)
class Settings:
    """Who acts and how: this Stack's owner label, the Herd face, and the C3 inputs."""

    owner: str
    manager: str = "operator"
    force: bool = False
    stuck_seconds: float = DEFAULT_STUCK_SECONDS
    # Release -> config digest that failed permanently before; message per release.
    held: Mapping[ReleaseKey, str] = field(default_factory=dict)
    # A tenant Stack's egress check before each pull (`herd.helm.egress_guard.RepoGuard`).
    guard: Callable[[ChartSpec], Awaitable[None]] | None = None
    drift: DriftMemory | None = None  # the engine's; None: no drift check (the CLI)
    require_fit: bool = False  # targets.placement.requireFit (`herd.addons.gpu.fit`)
    journal: OperationJournal | None = None  # the operator's; None: the CLI keeps none


Report = Callable[[ReleaseResult], Awaitable[None]]


class ReleaseActions:
    def __init__(
        self,
        gates: Gates,
        cache: ChartCache,
        settings: Settings,
        report: Report,
        current: Callable[[ReleaseKey], ReleaseResult],
    ) -> None:
        self._gates = gates
        self._cache = cache
        self._settings = settings
        self._report = report
        self._current = current
        self._crds = CrdStep()

    def decide(
        self,
        desired: DesiredRelease | None,
        observed: ObservedRelease | None,
        *,
        fresh: bool,
        key: ReleaseKey | None = None,
    ) -> Decision:
        settings = self._settings
        key = desired.key if desired is not None else key
        abandoned = (
            fresh
            and settings.journal is not None
            and key is not None
            and observed is not None
            and observed.status in PENDING
            and settings.journal.abandoned(key, observed)
        )
        return decide(
            desired,
            observed,
            settings.owner,
            manager=settings.manager,
            force=settings.force,
            now=time.time() if fresh else None,
            stuck_after=settings.stuck_seconds,
            held=settings.held.get(key) if key is not None else None,
            abandoned=abandoned,
        )

    def needs_helm(self, desired: DesiredRelease, observed: ObservedRelease | None) -> bool:
        """Whether the pass's observation says `desired` needs helm (decided again, fresh,
        under its lock before helm runs): a pass with nothing to do starts no helm."""
        return self.decide(desired, observed, fresh=False).action not in _NO_HELM

    async def _fresh(
        self, helm: ClusterHelm, desired: DesiredRelease | None, key: ReleaseKey
    ) -> tuple[ObservedRelease | None, Decision]:
        """Read the release again (its lock held) and decide. One an earlier leader's
        journaled helm left pending waits out the rest of the hand-over grace here, and is
        read again: its recovery does not wait for another pass."""
        observed = await helm.observe_release(key.namespace, key.name)
        decision = self.decide(desired, observed, fresh=True, key=key)
        journal = self._settings.journal
        if decision.action is not Action.WAIT or journal is None or observed is None:
            return observed, decision
        if wait := journal.abandoned_in(key, observed):  # None: a live actor's; 0: not late
            await asyncio.sleep(wait)
            self._gates.check()
            observed = await helm.observe_release(key.namespace, key.name)
            decision = self.decide(desired, observed, fresh=True, key=key)
        return observed, decision

    @contextlib.asynccontextmanager
    async def _journaled(
        self, key: ReleaseKey, where: tuple[int, tuple[str, ...]]
    ) -> AsyncIterator[None]:
        """Run a helm change recorded in the operator's journal: stored before helm starts,
        forgotten when it ends (`herd.kube.journal`)."""
        journal = self._settings.journal
        if journal is None:
            yield
            return
        await journal.started(key, *where)
        try:
            yield
        finally:
            journal.finished(key)

    async def converge(
        self,
        helm: ClusterHelm,
        desired: DesiredRelease,
        observed: ObservedRelease | None,
        check: RenderCheck | None = None,
    ) -> None:
        """`check`: a tenant release's render check, run before any install or upgrade."""
        base = replace(
            self._current(desired.key), config=desired.attempt, chart_version=desired.chart.version
        )
        try:
            result = await self._converge(helm, desired, observed, base, check)
        except Draining as draining:
            result = replace(base, state=State.PENDING, message=str(draining), transient=True)
        except HelmFailure as failure:
            result = replace(
                self._current(desired.key),
                state=State.FAILED,
                message=failure.message,
                transient=failure.transient,
                finished=_now(),
            )
        except Exception as error:  # a bug must stay this release's failure
            logger.exception("Unexpected error on release %s", desired.key)
            result = replace(
                self._current(desired.key),
                state=State.FAILED,
                message=describe(error, cluster=desired.key.cluster),
                transient=True,
                finished=_now(),
            )
        await self._report(result)

    async def _converge(
        self,
        helm: ClusterHelm,
        desired: DesiredRelease,
        observed: ObservedRelease | None,
        base: ReleaseResult,
        check: RenderCheck | None,
    ) -> ReleaseResult:
        decision = self.decide(desired, observed, fresh=False)
        if decision.action not in _NO_HELM:
            async with self._gates.release(desired.key):
                self._gates.check()
                observed, decision = await self._fresh(helm, desired, desired.key)
                if decision.action is Action.RECOVER and observed is not None:
                    await self._report(replace(base, state=State.DEPLOYING, action=Action.RECOVER))
                    async with (
                        self._gates.slot(),
                        self._journaled(desired.key, recovering(observed)),
                    ):
                        await helm.recover(observed)
                    observed = await helm.observe_release(desired.key.namespace, desired.key.name)
                    decision = self.decide(desired, observed, fresh=True)
                if decision.action not in _NO_HELM:
                    return await self._deploy(
                        helm, desired, decision, base, check=check, observed=observed
                    )
        return self._without_helm(decision, observed, base)

    def _without_helm(
        self, decision: Decision, observed: ObservedRelease | None, base: ReleaseResult
    ) -> ReleaseResult:
        base = replace(base, action=decision.action)
        if decision.action is Action.NOTHING:
            revision = observed.revision if observed else None
            return replace(base, state=State.DEPLOYED, message="", revision=revision)
        if decision.action is Action.WAIT:
            return replace(base, state=State.PENDING, message=decision.reason, transient=True)
        if decision.action is Action.HELD:
            return replace(
                base, state=State.FAILED, message=HELD_MESSAGE, held=True, finished=_now()
            )
        # CONFLICT, or a RECOVER that left the release pending: nothing more this pass.
        transient = decision.action is Action.RECOVER
        return replace(
            base, state=State.FAILED, message=decision.reason, transient=transient, finished=_now()
        )

    async def _deploy(
        self,
        helm: ClusterHelm,
        desired: DesiredRelease,
        decision: Decision,
        base: ReleaseResult,
        *,
        check: RenderCheck | None = None,
        observed: ObservedRelease | None = None,
    ) -> ReleaseResult:
        base = replace(base, action=decision.action)
        chart_dir = await self._cache.get(desired.chart, desired.source)
        upgrade = observed is not None and observed.status != "uninstalled"
        manifest = ""
        if check is not None:
            # As helm will run it: an upgrade when a release exists, hooks included,
            # `lookup` answered by the API server as the tenant (`helm` is the tenant's).
            manifest = await checked_render(helm, self._gates, desired, chart_dir, upgrade=upgrade)
            refused = await _checked(check, manifest, desired.key.namespace)
            if refused:  # the same config fails the same way: permanent (held) until changed
                return replace(
                    base, state=State.FAILED, message=refused, transient=False, finished=_now()
                )
        if self._settings.require_fit:
            if not manifest:
                async with self._gates.slot():
                    manifest = await helm.render(desired, chart_dir, upgrade=upgrade)
            refused = await fit_refusal(helm, desired, manifest)
            if refused:  # nodes may join: retried (transient), never a helm write
                return replace(
                    base, state=State.SKIPPED, message=refused, transient=True, finished=_now()
                )
        crds = await self._crds.crds(desired, chart_dir)  # CreateReplace only
        message = decision.reason + crd_note(desired.chart.crds, len(crds))
        await self._report(replace(base, state=State.DEPLOYING, message=message, started=_now()))
        async with self._journaled(desired.key, deploying(observed)):
            return await self._install(helm, desired, chart_dir, base, crds)

    async def _install(
        self,
        helm: ClusterHelm,
        desired: DesiredRelease,
        chart_dir: Path,
        base: ReleaseResult,
        crds: list[Crd],
    ) -> ReleaseResult:
        """Under a helm slot: the chart's CRDs, then helm install or upgrade. While helm
        waits, a GPU fit warning (`watch_fit`) shows in the row, and explains a timeout."""
        async with self._gates.slot():
            started = _now()  # helm's own time, not the wait for a slot
            await self._crds.apply(helm.cluster, helm.kubeconfig, helm.identity, crds)

            warnings: list[str] = []

            async def warn(message: str) -> None:
                warnings.append(message)
                await self._report(
                    replace(base, state=State.DEPLOYING, message=message, started=started)
                )

            # Only helm --wait can take long enough for an early warning to matter.
            fit = (
                asyncio.ensure_future(watch_fit(helm, desired, warn))
                if desired.chart.wait
                else None
            )
            try:
                written = await helm.install_or_upgrade(
                    desired, chart_dir, self._settings.owner, self._settings.manager
                )
            except HelmFailure as failure:  # the warning explains helm's timeout: keep it
                if warnings:
                    failure.message = f"{warnings[0]}; {failure.message}"
                return await self._failed(helm, desired, base, failure, started)
            finally:
                if fit is not None:
                    fit.cancel()
                    await asyncio.gather(fit, return_exceptions=True)
        deployed = replace(
            base,
            state=State.DEPLOYED,
            revision=written.revision,
            manifest=written.manifest,
            message="",
            transient=False,
            started=started,
            finished=_now(),
        )
        return await chart_test(helm, desired, deployed, self._gates, self._report)

    async def _failed(
        self,
        helm: ClusterHelm,
        desired: DesiredRelease,
        base: ReleaseResult,
        failure: HelmFailure,
        started: datetime,
    ) -> ReleaseResult:
        """A failed install or upgrade; the row carries the revision helm left when it is
        Herd's (its config label), so the ownership record keeps it removable."""
        revision = None
        try:
            left = await helm.observe_release(desired.key.namespace, desired.key.name)
        except HelmFailure:
            left = None
        if left is not None and left.labels.get(LABEL_CONFIG) == desired.config:
            revision = left.revision
        return replace(
            base,
            state=State.FAILED,
            revision=revision,
            message=failure.message,
            transient=failure.transient,
            started=started,
            finished=_now(),
        )

    async def remove(
        self,
        helm: ClusterHelm,
        observed: ObservedRelease,
        *,
        recorded: int | None = None,
        check: RenderCheck | None = None,
    ) -> None:
        """Uninstall a release this Stack recorded and no longer wants (or recover it
        first). `recorded`: the revision Herd installed; `check`: the tenant's render check,
        which the stored release's hooks must pass."""
        key = ReleaseKey(helm.cluster, observed.namespace, observed.name)
        result = ReleaseResult(
            key,
            observed.chart,
            State.UNINSTALLING,
            action=Action.UNINSTALL,
            revision=observed.revision,
        )
        try:
            result = await self._remove(helm, key, observed, result, recorded=recorded, check=check)
        except Draining as draining:
            result = replace(result, state=State.PENDING, message=str(draining), transient=True)
        except HelmFailure as failure:
            result = replace(
                result,
                state=State.FAILED,
                message=failure.message,
                transient=failure.transient,
                finished=_now(),
            )
        except Exception as error:
            logger.exception("Unexpected error removing release %s", key)
            result = replace(
                result,
                state=State.FAILED,
                message=describe(error, cluster=key.cluster),
                transient=True,
                finished=_now(),
            )
        await self._report(result)

    async def _remove(
        self,
        helm: ClusterHelm,
        key: ReleaseKey,
        observed: ObservedRelease,
        result: ReleaseResult,
        *,
        recorded: int | None,
        check: RenderCheck | None,
    ) -> ReleaseResult:
        decision = self.decide(None, observed, fresh=False, key=key)
        if decision.action is Action.CONFLICT:
            return replace(result, state=State.FAILED, message=decision.reason, finished=_now())
        async with self._gates.release(key):
            self._gates.check()
            fresh, decision = await self._fresh(helm, None, key)
            if decision.action is Action.WAIT:
                return replace(result, state=State.PENDING, message=decision.reason, transient=True)
            if decision.action is Action.CONFLICT:
                return replace(result, state=State.FAILED, message=decision.reason, finished=_now())
            if fresh is None or decision.action is Action.NOTHING:
                return replace(result, state=State.UNINSTALLED, finished=_now())
            result = replace(result, started=_now(), revision=fresh.revision)
            await self._report(result)
            async with self._gates.slot():
                skip = pinned(recorded, fresh.revision) or await hooks_refused(
                    helm, check, observed.namespace, observed.name
                )
                if skip:
                    logger.warning("Uninstalling release %s with --no-hooks: %s", key, skip)
                async with self._journaled(key, removing(fresh)):
                    await helm.uninstall(observed.namespace, observed.name, no_hooks=bool(skip))
            message = f"uninstalled with --no-hooks: {skip}" if skip else ""
            return replace(result, state=State.UNINSTALLED, message=message, finished=_now())


async def _checked(check: RenderCheck, manifest: str, namespace: str) -> str:
    """The render check's verdict on a manifest ("" when allowed), from a worker process
    (`RenderCheck.problems`). The one place the check is called."""
    return await check.problems(manifest, namespace)
