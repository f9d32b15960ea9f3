"""One release's steps: decide from a fresh observation under its lock, then act.

`ReleaseActions.converge` brings one desired release to its desired state, and
`ReleaseActions.remove` uninstalls one release the Stack no longer wants. Both decide
first from the pass's observation (a no-op pass reads nothing more). When there is
something to do they take the release's lock, re-read that release's helm Secrets
(`ClusterHelm.observe_release`), decide again (`herd.plan.decide`, with the clock: a
pending-* release is stuck only when older than its timeout plus `stuck_seconds`,
otherwise a live actor owns it and nothing is done), and only then run helm.

Every outcome, expected or not, ends as this release's result; nothing raises out.

Callers: `herd.rollout.scheduler`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace

from herd.chart_crds import crd_note
from herd.helm import ChartCache, ClusterHelm, HelmFailure
from herd.plan import (
    DEFAULT_STUCK_SECONDS,
    HELD_MESSAGE,
    Action,
    Decision,
    DesiredRelease,
    ObservedRelease,
    ReleaseKey,
    decide,
)
from herd.results import ReleaseResult, State
from herd.results import now as _now
from herd.rollout.crds import CrdStep
from herd.rollout.gates import Draining, Gates
from herd.rollout.gpufit import watch_fit
from herd.rollout.tenants import RenderCheck

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
        return decide(
            desired,
            observed,
            settings.owner,
            manager=settings.manager,
            force=settings.force,
            now=time.time() if fresh else None,
            stuck_after=settings.stuck_seconds,
            held=settings.held.get(key) if key is not None else None,
        )

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
                message=f"unexpected {type(error).__name__} on cluster {desired.key.cluster}",
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
                observed = await helm.observe_release(desired.key.namespace, desired.key.name)
                decision = self.decide(desired, observed, fresh=True)
                if decision.action is Action.RECOVER and observed is not None:
                    await self._report(replace(base, state=State.DEPLOYING, action=Action.RECOVER))
                    async with self._gates.slot():
                        await helm.recover(observed)
                    observed = await helm.observe_release(desired.key.namespace, desired.key.name)
                    decision = self.decide(desired, observed, fresh=True)
                if decision.action not in _NO_HELM:
                    return await self._deploy(helm, desired, decision, base, check)
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
        check: RenderCheck | None = None,
    ) -> ReleaseResult:
        base = replace(base, action=decision.action)
        chart_dir = await self._cache.get(desired.chart, desired.source)
        if check is not None:
            async with self._gates.slot():
                manifest = await helm.render(desired, chart_dir)
            refused = await check.problems(manifest, desired.key.namespace)
            if refused:  # the same config fails the same way: permanent (held) until changed
                return replace(
                    base, state=State.FAILED, message=refused, transient=False, finished=_now()
                )
        crds = await self._crds.crds(desired, chart_dir)  # CreateReplace only
        message = decision.reason + crd_note(desired.chart.crds, len(crds))
        await self._report(replace(base, state=State.DEPLOYING, message=message, started=_now()))
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
                revision = await helm.install_or_upgrade(
                    desired, chart_dir, self._settings.owner, self._settings.manager
                )
            except HelmFailure as failure:  # the warning explains helm's timeout: keep it
                if warnings:
                    failure.message = f"{warnings[0]}; {failure.message}"
                raise
            finally:
                if fit is not None:
                    fit.cancel()
                    await asyncio.gather(fit, return_exceptions=True)
        return replace(
            base,
            state=State.DEPLOYED,
            revision=revision,
            message="",
            transient=False,
            started=started,
            finished=_now(),
        )

    async def remove(self, helm: ClusterHelm, observed: ObservedRelease) -> None:
        """Uninstall a release this Stack owns and no longer wants (or recover it first)."""
        key = ReleaseKey(helm.cluster, observed.namespace, observed.name)
        result = ReleaseResult(
            key,
            observed.chart,
            State.UNINSTALLING,
            action=Action.UNINSTALL,
            revision=observed.revision,
        )
        try:
            result = await self._remove(helm, key, observed, result)
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
                message=f"unexpected {type(error).__name__} on cluster {key.cluster}",
                transient=True,
                finished=_now(),
            )
        await self._report(result)

    async def _remove(
        self, helm: ClusterHelm, key: ReleaseKey, observed: ObservedRelease, result: ReleaseResult
    ) -> ReleaseResult:
        decision = self.decide(None, observed, fresh=False, key=key)
        if decision.action is Action.CONFLICT:
            return replace(result, state=State.FAILED, message=decision.reason, finished=_now())
        async with self._gates.release(key):
            self._gates.check()
            fresh = await helm.observe_release(observed.namespace, observed.name)
            decision = self.decide(None, fresh, fresh=True, key=key)
            if decision.action is Action.WAIT:
                return replace(result, state=State.PENDING, message=decision.reason, transient=True)
            if decision.action is Action.CONFLICT:
                return replace(result, state=State.FAILED, message=decision.reason, finished=_now())
            if fresh is None or decision.action is Action.NOTHING:
                return replace(result, state=State.UNINSTALLED, finished=_now())
            result = replace(result, started=_now())
            await self._report(result)
            async with self._gates.slot():
                await helm.uninstall(observed.namespace, observed.name)
            return replace(result, state=State.UNINSTALLED, finished=_now())
