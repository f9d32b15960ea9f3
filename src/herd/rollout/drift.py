"""A cluster's drift check within a pass: which releases, as whom, and into their rows.

After a cluster's releases converged (or, for a cluster that is only observed: a later
stage, a suspended Stack, with writing off), `check_drift` checks the releases that are
Deployed at their desired config and that nothing changed this pass, each with its
policy (`herd.plan.drift.effective`: `spec.drift` under `charts[].drift`), through
`herd.clusters.drift.check_cluster` in a thread. A tenant Stack's releases are read and
corrected as the tenant (`identity`, helm's `--kube-as-user` as request headers), so its
grants bound a correction as they bound helm. Shared add-on releases are not checked.

Each check carries what the Stack's ownership record holds of the release (`Owned`): the
revision Herd wrote and its manifest's digest; only that manifest is ever applied
(`herd.clusters.drift`), whoever writes. Manifests are parsed in a worker process
(`herd.helm.worker`, the render check's pool, with its time and memory limits): a release
Secret holds up to 16 MiB of somebody's bytes, and PyYAML in a thread holds the GIL for
seconds, which would stall the event loop (Lease renewal) as the render check would.

Callers: `herd.rollout.scheduler` (with the engine's `DriftMemory`, `Settings.drift`), and
`herd.engine.engine.Engine.preview` (`preview_drift`, `herd plan`), `herd.cli.fleet`
(`status_drift`, `herd status -f`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from herd.api.v1 import StackSpec
from herd.clusters.drift import DriftMemory, Parse, ReleaseCheck, check_cluster
from herd.errors import describe
from herd.helm import worker
from herd.helm.crd_apply import impersonation
from herd.kube.client import api_client_from_kubeconfig
from herd.kube.shared import shared_client
from herd.plan.decide import Action, Decision
from herd.plan.desired import StackPlan
from herd.plan.drift import DISABLED, ObjectRef, Policy, ReleaseDrift, effective, manifest_objects
from herd.plan.ownership import Owned, Recorded
from herd.plan.releases import DesiredRelease, ObservedRelease, ReleaseKey
from herd.plan.results import ReleaseResult, State
from herd.plan.tenancy import Identity, addon_release, helm_identity
from herd.rollout.actions import Report, Settings
from herd.rollout.target import Target

logger = logging.getLogger(__name__)
T = TypeVar("T")


class DriftStep:
    """A rollout's drift step: `run` after a cluster's releases settled."""

    def __init__(self, settings: Settings, report: Report, owned: Owned | None = None) -> None:
        self._settings = settings
        self._report = report
        self._owned = owned or Owned()  # the Stack's ownership record, as the pass began

    async def run(
        self,
        plan: StackPlan | None,
        target: Target,
        desired: Sequence[DesiredRelease],
        results: Mapping[ReleaseKey, ReleaseResult],
        *,
        write: bool = False,
    ) -> None:
        """The drift of the cluster's settled releases into their rows; corrected where
        `write` (the cluster is written this pass)."""
        settings = self._settings
        if settings.drift is None or plan is None:
            return
        checks = checks_for(plan, desired, results, write=write, recorded=self._owned.recorded)
        now = time.time()
        for release in desired:  # written this pass: its first check is within an interval
            acted = results.get(release.key)
            if acted is not None and acted.action in (Action.INSTALL, Action.UPGRADE):
                policy = effective(plan.spec.drift, release.chart.drift)
                if policy.mode != DISABLED:
                    settings.drift.expect(settings.owner, release.key, policy.interval, now)
        found: dict[ReleaseKey, ReleaseDrift] = {}
        try:
            for identity, mine in _by_identity(target, checks).items():
                found |= await check_drift(
                    settings.drift, settings.owner, target.kubeconfig, mine, identity
                )
        except Exception as error:  # a drift check never fails the cluster's releases
            logger.warning("Drift check on cluster %s failed: %s", target.cluster, describe(error))
        for key, drift in found.items():
            await self._report(replace(results[key], drift=drift))


def _by_identity(
    target: Target, checks: list[ReleaseCheck]
) -> dict[Identity | None, list[ReleaseCheck]]:
    """Checks by who makes them: a bounded Stack's releases as the tenant, as helm ran
    them, except its add-on releases (Herd's dashboards: the kubeconfig's identity)."""
    tenant = helm_identity(target.grants) if target.grants else None
    out: dict[Identity | None, list[ReleaseCheck]] = {}
    for check in checks:
        addon = target.grants is not None and addon_release(target.grants, check.key.namespace)
        out.setdefault(None if addon else tenant, []).append(check)
    return out


def checks_for(
    plan: StackPlan,
    desired: Sequence[DesiredRelease],
    results: Mapping[ReleaseKey, ReleaseResult],
    *,
    write: bool,
    recorded: Callable[[ReleaseKey], Recorded | None] = lambda _: None,
) -> list[ReleaseCheck]:
    """The releases to check: the Stack's own, Deployed with nothing done this pass, each
    with what the ownership record holds of it (`recorded`)."""
    out = []
    for release in desired:
        result = results.get(release.key)
        if release.owner is not None or result is None or result.revision is None:
            continue
        if result.state is not State.DEPLOYED or result.action not in (None, Action.NOTHING):
            continue
        policy = effective(plan.spec.drift, release.chart.drift)
        if policy.mode != DISABLED:
            found = recorded(release.key)
            out.append(ReleaseCheck(release.key, result.revision, policy, write, found))
    return out


async def check_drift(
    memory: DriftMemory,
    owner: str,
    kubeconfig: Path,
    checks: list[ReleaseCheck],
    identity: Identity | None = None,
) -> dict[ReleaseKey, ReleaseDrift]:
    """Check (and correct, where `write`) one cluster's releases; their drift, by key."""
    if not checks:
        return {}
    parse = _in_worker(asyncio.get_running_loop())
    check = partial(_check, memory, owner, kubeconfig, checks, identity, parse=parse)
    return await in_check_thread(check)


# The checks' own threads. A check's thread waits for the worker pool (`_in_worker`), whose
# pipe I/O runs in the event loop's default executor (`asyncio.to_thread`): were the checks
# in that executor too (its size: cores + 4), as many clusters checked at once would hold
# every thread, waiting for a pool that needs one: the controller stalled (its Lease
# lapsed, measured at 10 clusters on 2 cores). 16: more than HERD_MAX_CLUSTERS (10) by default.
_CHECK_THREADS = ThreadPoolExecutor(max_workers=16, thread_name_prefix="herd-drift")


async def in_check_thread(check: Callable[[], T]) -> T:
    """Run `check` in a drift check thread, never in the loop's default executor."""
    return await asyncio.get_running_loop().run_in_executor(_CHECK_THREADS, check)


def _in_worker(loop: asyncio.AbstractEventLoop) -> Parse:
    """`manifest_objects` in the worker pool, called from the check's thread (which waits
    without the GIL); bounded as the render check is (`worker.WorkerError` otherwise)."""

    def parse(manifest: str, namespace: str) -> list[tuple[ObjectRef, dict[str, Any]]]:
        pool = worker.pool()
        run = pool.run("the drift check's manifest", manifest_objects, manifest, namespace)
        future = asyncio.run_coroutine_threadsafe(run, loop)
        # The pool kills a check after its limit; waiting more than that for a slot and a
        # start means the loop is stopping: never hang the thread.
        wait = worker.START_SECONDS + 4 * pool.limits.seconds
        try:
            return future.result(timeout=wait)
        except TimeoutError:
            future.cancel()
            raise worker.WorkerError("the drift check's manifest: no worker answered") from None

    return parse


def _check(
    memory: DriftMemory,
    owner: str,
    kubeconfig: Path,
    checks: list[ReleaseCheck],
    identity: Identity | None,
    *,
    parse: Parse,
) -> dict[ReleaseKey, ReleaseDrift]:
    admin = shared_client(kubeconfig)  # the kubeconfig's identity, no header added
    if identity is None:
        return check_cluster(
            memory, owner, checks, admin=admin, writer=admin, now=time.time(), parse=parse
        )
    writer = api_client_from_kubeconfig(kubeconfig)  # its own: it impersonates the tenant
    try:
        for name, value in impersonation(identity).items():
            writer.set_default_header(name, value)  # type: ignore[no-untyped-call]
        return check_cluster(
            memory, owner, checks, admin=admin, writer=writer, now=time.time(), parse=parse
        )
    finally:
        writer.close()  # type: ignore[no-untyped-call]


async def preview_drift(
    plan: StackPlan,
    targets: Sequence[Target],
    rows: Sequence[tuple[ReleaseKey, DesiredRelease | None, ObservedRelease | None, Decision]],
) -> dict[ReleaseKey, ReleaseDrift]:
    """`herd plan`: the drift of every release that needs no helm call (`rows`: what
    `Rollout.decisions` says), checked now, read-only, as the tenant where the grants
    say; what a correction would change is its paths."""
    found: dict[ReleaseKey, ReleaseDrift] = {}
    for target in targets:
        due = [
            (key, observed.revision, effective(plan.spec.drift, desired.chart.drift))
            for key, desired, observed, decision in rows
            if key.cluster == target.cluster
            and desired is not None
            and desired.owner is None
            and observed is not None
            and decision.action is Action.NOTHING
        ]
        tenant = helm_identity(target.grants) if target.grants else None
        grants = target.grants
        admin = [d for d in due if grants is not None and addon_release(grants, d[0].namespace)]
        found |= await check_now(target.kubeconfig, admin)
        found |= await check_now(target.kubeconfig, [d for d in due if d not in admin], tenant)
    return found


async def status_drift(
    spec: StackSpec, cluster: str, kubeconfig: Path, releases: Iterable[ObservedRelease]
) -> dict[ReleaseKey, ReleaseDrift]:
    """`herd status -f STACK`: the drift of the Stack's deployed releases in `cluster`,
    each with its chart's policy, checked now and read-only."""
    charts = {(c.namespace, c.release): c for c in spec.charts}
    due = [
        (ReleaseKey(cluster, o.namespace, o.name), o.revision, effective(spec.drift, chart.drift))
        for o in releases
        if (chart := charts.get((o.namespace, o.name))) is not None and o.status == "deployed"
    ]
    return await check_now(kubeconfig, due)


async def check_now(
    kubeconfig: Path,
    releases: Sequence[tuple[ReleaseKey, int, Policy]],
    identity: Identity | None = None,
) -> dict[ReleaseKey, ReleaseDrift]:
    """One cluster's releases (key, helm revision, policy) checked at once, read-only,
    with a memory of their own (every manifest and object is read)."""
    memory, owner, now = DriftMemory(), "now", time.time()
    checks = []
    for key, revision, policy in releases:
        if policy.mode != DISABLED:
            memory.expect(owner, key, 0.0, now)  # due now
            checks.append(ReleaseCheck(key, revision, policy))
    return await check_drift(memory, owner, kubeconfig, checks, identity)
