"""Fleet rollback, carried out: clusters back to their last good revisions.

`Rollback.run` takes the clusters `herd.plan.rollback.rollback_clusters` chose and returns
each to its last good revisions (`herd.plan.lastgood`), clusters in parallel (bounded by
the cluster gate), releases of one cluster in reverse dependency order: the chart DAG's
waves last first, a wave's releases together, the next wave only when the one before is
back. Each release: a fresh observation under its lock, then `herd.plan.rollback.step`;
to roll back, Herd reads the recorded revision as helm stored it (its Secret, as Herd)
and `verify`s its chart version, values digest and manifest digest against the record,
then runs `helm rollback <revision>`. A revision gone from the history, or not the one
Herd recorded, is not rolled back (no other way back is guessed: Herd does not keep the
values themselves, which may hold secrets); the release's row says why, the cluster's
rollback is Failed, the Stack stays halted.

Every write runs as the release's identity, as the rollout's do: a tenant Stack's own
releases as the tenant (`herd.plan.tenancy.helm_identity`, its RBAC provisioned by
`herd.rollout.tenants`), shared add-ons and unrestricted Stacks as the kubeconfig.

Callers: `herd.rollout.staged` (a failed stage with `onFailure: Rollback`) and
`herd.engine.engine` (`Engine.rollback`, the CLI's `herd rollback`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from herd.clusters.drift_api import DriftRequestError, stored_release
from herd.errors import HerdError, TransientError, describe
from herd.helm.client import ClusterHelm
from herd.helm.environment import HelmEnvironment
from herd.kube.client import api_client_from_kubeconfig
from herd.plan.decide import Action
from herd.plan.desired import StackPlan
from herd.plan.lastgood import Good, Record, values_digest
from herd.plan.ownership import manifest_digest, release_id
from herd.plan.releases import DesiredRelease
from herd.plan.results import ReleaseResult, State
from herd.plan.results import now as _now
from herd.plan.rollback import ReleaseStep, Step, reverse_waves, step, verify
from herd.plan.tenancy import helm_identity
from herd.rollout.gates import Gates
from herd.rollout.target import Target
from herd.rollout.tenants import RenderCheck, TenantClusters

logger = logging.getLogger(__name__)

ROLLED_BACK = "RolledBack"
UNCHANGED = "Unchanged"
FAILED = "Failed"


@dataclass
class ClusterRollback:
    """One cluster's rollback: its state (RolledBack, Unchanged, Failed), a message per
    release, and the release rows (action `rollback` where helm rolled back)."""

    cluster: str
    rows: list[ReleaseResult] = field(default_factory=list)
    order: list[str] = field(default_factory=list)  # charts rolled back, in order

    @property
    def state(self) -> str:
        if any(r.state is State.FAILED for r in self.rows):
            return FAILED
        return ROLLED_BACK if self.order else UNCHANGED

    @property
    def message(self) -> str:
        said = [f"{r.chart}: {r.message}" for r in self.rows if r.message]
        return "; ".join(said) or "nothing to roll back"


class Rollback:
    """Rolls clusters back for one Stack pass (see the module docstring)."""

    def __init__(
        self,
        env: HelmEnvironment,
        gates: Gates,
        tenants: TenantClusters,
        record: Record,
    ) -> None:
        self._env = env
        self._gates = gates
        self._tenants = tenants
        self._record = record
        self._reason = ""

    async def run(
        self,
        plan: StackPlan,
        targets: Mapping[str, Target],
        clusters: Sequence[str],
        reason: str,
    ) -> list[ClusterRollback]:
        """Each of `clusters` rolled back (one without a target: Failed, not reachable);
        `reason` (such as "stage canary failed") ends each rolled back release's message."""
        self._reason = reason
        out = [ClusterRollback(c) for c in clusters]
        async with asyncio.TaskGroup() as group:
            for done in out:
                group.create_task(self._supervised(plan, targets.get(done.cluster), done))
        return out

    async def _supervised(
        self, plan: StackPlan, target: Target | None, done: ClusterRollback
    ) -> None:
        # Shared add-on releases serve every Stack on the cluster: never rolled back.
        desired = [d for d in plan.releases_for(done.cluster) if d.owner is None]
        try:
            if target is None:
                raise TransientError("the cluster cannot be used now (no kubeconfig)")
            async with self._gates.clusters:
                await self._cluster(plan, target, desired, done)
        except Exception as error:  # a cluster's fault stays its rollback's failure
            if not isinstance(error, HerdError):
                logger.exception("Rollback failed on cluster %s", done.cluster)
            why = describe(error, cluster=done.cluster)
            seen = {r.key for r in done.rows}
            done.rows += [
                _row(d, State.FAILED, f"not rolled back: {why}")
                for d in desired
                if d.key not in seen
            ]

    async def _cluster(
        self, plan: StackPlan, target: Target, desired: list[DesiredRelease], done: ClusterRollback
    ) -> None:
        identity = helm_identity(target.grants) if target.grants else None
        check: RenderCheck | None = None
        if target.grants is not None and identity is not None:
            own = {d.key.namespace for d in desired if d.owner is None}
            check = await self._tenants.prepare(
                target.cluster, target.kubeconfig, target.grants, own
            )
        admin = ClusterHelm(self._env, target.cluster, target.kubeconfig)
        tenant = ClusterHelm(self._env, target.cluster, target.kubeconfig, identity=identity)
        by_chart = {d.chart.name: d for d in desired}
        try:
            for wave in reverse_waves(plan.waves, by_chart):
                async with asyncio.TaskGroup() as group:
                    tasks = []
                    for name in wave:
                        release = by_chart[name]
                        tenant_ns = check is None or check.runs_as_tenant(release.key.namespace)
                        helm = tenant if identity is not None and tenant_ns else admin
                        tasks.append(group.create_task(self._release(helm, target, release, done)))
                # A failed `helm rollback` never cancels its wave's others; it stops the
                # waves after it (their releases are what the failed one depends on).
                if failed := [chart for t in tasks if (chart := t.result())]:
                    raise TransientError(f"the rollback of {', '.join(failed)} failed first")
        finally:
            admin.close()
            tenant.close()

    async def _release(
        self, helm: ClusterHelm, target: Target, release: DesiredRelease, done: ClusterRollback
    ) -> str | None:
        """One release back to its last good revision; its chart's name when helm failed."""
        key = release.key
        entries = self._record.get(key.cluster, {}).get(release_id(key.namespace, key.name), ())
        async with self._gates.release(key):
            observed = await helm.observe_release(key.namespace, key.name)
            decided = step(
                entries,
                release.chart.version,
                values_digest(release.values),
                observed.revision if observed else None,
            )
            if decided.step is not Step.ROLL_BACK:
                done.rows.append(_kept(release, decided, observed.revision if observed else None))
                return None
            assert decided.good is not None
            why = await _check(target, release, decided.good)
            if why:
                done.rows.append(_row(release, State.FAILED, f"not rolled back: {why}"))
                return None
            async with self._gates.slot():
                try:
                    revision = await helm.rollback(
                        key.namespace, key.name, decided.good.revision, release.chart.timeout
                    )
                except HerdError as error:
                    why = describe(error, cluster=key.cluster)
                    done.rows.append(_row(release, State.FAILED, f"rollback failed: {why}"))
                    return release.chart.name
        done.order.append(release.chart.name)
        done.rows.append(_rolled(release, decided.good, revision, self._reason))
        return None


async def _check(target: Target, release: DesiredRelease, good: Good) -> str:
    """`verify` against the revision as stored now, read as Herd (never as the tenant)."""

    def read() -> tuple[str | None, str | None, str | None]:
        api = api_client_from_kubeconfig(target.kubeconfig)
        try:
            stored = stored_release(api, release.key.namespace, release.key.name, good.revision)
        except DriftRequestError as error:
            if error.status == 404:
                return None, None, None
            raise
        finally:
            api.close()  # type: ignore[no-untyped-call]
        if not isinstance(stored, dict):
            return "", None, None
        chart = stored.get("chart") or {}
        version = str((chart.get("metadata") or {}).get("version") or "")
        config = stored.get("config") or {}
        values = values_digest(config) if isinstance(config, dict) else None
        manifest = stored.get("manifest")
        return version, values, manifest_digest(manifest) if isinstance(manifest, str) else None

    version, values, manifest = await asyncio.to_thread(read)
    return verify(good, version, values, manifest)


def _row(release: DesiredRelease, state: State, message: str) -> ReleaseResult:
    return ReleaseResult(
        release.key,
        release.chart.name,
        state,
        action=Action.ROLLBACK,
        message=message,
        finished=_now(),
    )


def _kept(release: DesiredRelease, decided: ReleaseStep, revision: int | None) -> ReleaseResult:
    row = _row(release, State.DEPLOYED if revision else State.SKIPPED, decided.message)
    version = decided.good.version if decided.good and decided.step is Step.UNCHANGED else None
    return ReleaseResult(
        row.key,
        row.chart,
        row.state,
        action=Action.NOTHING,
        revision=revision,
        chart_version=version,
        message=decided.message,
        finished=row.finished,
    )


def _rolled(release: DesiredRelease, good: Good, revision: int, reason: str) -> ReleaseResult:
    message = (
        f"rolled back to revision {good.revision} (chart {good.version}, generation "
        f"{good.generation}) as revision {revision}: {reason}"
    )
    return ReleaseResult(
        release.key,
        release.chart.name,
        State.DEPLOYED,
        action=Action.ROLLBACK,
        revision=revision,
        chart_version=good.version,
        message=message,
        finished=_now(),
        manifest=good.manifest,
    )
