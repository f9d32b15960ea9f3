"""A tenant Stack's side of a rollout: its RBAC in each downstream cluster, its render check.

For a Stack bounded by grants (`herd.plan.tenancy.Grants`, not unrestricted), before the first
helm call on a cluster the scheduler asks `TenantClusters.prepare` for that cluster's
`RenderCheck`: Herd provisions the tenant's RBAC there (`herd.clusters.tenant_rbac.provision`:
allowed chart namespaces created, RoleBindings, the cluster-scoped ClusterRole when granted)
as the kubeconfig's admin, and learns from discovery what is cluster-scoped. This is cached
process-wide per (cluster, tenant) and redone only when what it depends on changes (the
grants covering the cluster, a chart namespace not ensured yet) or after `REFRESH_SECONDS`,
so a pass with nothing new makes no RBAC call and starts no helm process.

`RenderCheck.problems` is the render check of one release (`herd.plan.render_check.render_check`
over `helm template`), run just before an install or upgrade, in a worker process.
`RenderCheck.runs_as_tenant` says which helm a Stack's own release goes through: the
tenant's, except Herd's add-on releases of the Stack (its dashboards, in the agent's
namespace: `herd.plan.tenancy.addon_release`), which keep the kubeconfig's identity like the
shared add-ons.

`calls_lookup` tells which charts need the render with `lookup` answered by the cluster,
and `checked_render` is what the check reads.

Callers: `herd.rollout.scheduler` (prepare), `herd.rollout.actions` (the check).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from herd.clusters.tenant_rbac import provision
from herd.helm import worker
from herd.helm.failures import FailureKind, HelmFailure
from herd.kube.client import api_client_from_kubeconfig
from herd.plan.render_check import render_check
from herd.plan.tenancy import Grants, addon_release

if TYPE_CHECKING:
    from herd.helm.client import ClusterHelm
    from herd.plan.releases import DesiredRelease
    from herd.rollout.gates import Gates

logger = logging.getLogger(__name__)

REFRESH_SECONDS = 600.0  # discovery and RBAC redone at least this often (new CRDs, deleted ns)


@dataclass(frozen=True)
class RenderCheck:
    """What a tenant's release may create in one cluster."""

    grants: Grants  # already `on_cluster`
    cluster_scoped: frozenset[str]

    async def problems(self, manifest: str, namespace: str) -> str:
        """The release's failure message when the manifest is not allowed, else "".

        Parsed and decided in a worker process (`herd.helm.worker`), with a time and memory
        limit: a check that exceeds them refuses the release (permanent for this config).
        """
        try:
            return await worker.pool().run(
                "the render check", render_check, self.grants, manifest, namespace,
                self.cluster_scoped,
            )  # fmt: skip
        except worker.WorkerDied as error:  # killed (the controller stops?): not a verdict
            raise HelmFailure(FailureKind.FAILED, str(error), transient=True) from None
        except worker.WorkerError as error:  # too slow or too big: this config's verdict
            return str(error)

    def runs_as_tenant(self, namespace: str) -> bool:
        """False for the Stack's add-on releases (`herd.plan.tenancy.addon_release`): they are
        deployed, and removed, with the kubeconfig's identity and no render check."""
        return not addon_release(self.grants, namespace)


class TenantClusters:
    """Process-wide cache of provisioned tenant RBAC, one entry per (cluster, tenant)."""

    def __init__(self, refresh_seconds: float = REFRESH_SECONDS) -> None:
        self._refresh = refresh_seconds
        # (cluster, tenant) -> grants fingerprint, when, namespaces ensured, cluster-scoped kinds
        self._done: dict[tuple[str, str], tuple[str, float, frozenset[str], frozenset[str]]] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def prepare(
        self, cluster: str, kubeconfig: Path, grants: Grants, namespaces: Collection[str]
    ) -> RenderCheck:
        """Provision (if needed) and return the cluster's render check for `grants`.

        Raises `TransientError` when the cluster cannot be read or written.
        """
        key = (cluster, grants.namespace)
        fingerprint = _fingerprint(grants)
        wanted = frozenset(namespaces)
        async with self._locks.setdefault(key, asyncio.Lock()):
            done = self._done.get(key)
            if done and done[0] == fingerprint and time.monotonic() - done[1] < self._refresh:
                if wanted <= done[2]:
                    return RenderCheck(grants, done[3])
                wanted |= done[2]  # the tenant's other Stacks' namespaces stay ensured
            kinds = await asyncio.to_thread(_provision, kubeconfig, grants, sorted(wanted))
            self._done[key] = (fingerprint, time.monotonic(), wanted, kinds)
            return RenderCheck(grants, kinds)

    def forget(self, cluster: str) -> None:
        """Redo the cluster's provisioning next time (its RBAC may have been changed)."""
        for key in [k for k in self._done if k[0] == cluster]:
            self._done.pop(key, None)


def _provision(kubeconfig: Path, grants: Grants, namespaces: list[str]) -> frozenset[str]:
    api = api_client_from_kubeconfig(kubeconfig)
    try:
        return provision(api, grants, namespaces).kinds
    finally:
        api.close()  # type: ignore[no-untyped-call]


def _fingerprint(grants: Grants) -> str:
    return json.dumps(
        [
            [[name, spec.model_dump(mode="json")] for name, spec in grants.grants],
            sorted(grants.addon_namespaces),  # newly reserved: its RoleBinding goes
        ],
        sort_keys=True,
    )


LOOKUP = re.compile(rb"\blookup\b")
SCAN_BYTES = 8 * 1024 * 1024  # past this much template text, assume `lookup` is used


def calls_lookup(chart_dir: Path) -> bool:
    """Whether the chart's templates (subcharts included) may call `lookup`. A packed
    subchart, or more text than `SCAN_BYTES`, counts as yes. Blocking: run in a thread."""
    budget = SCAN_BYTES
    for path in chart_dir.rglob("*"):
        if path.suffix == ".tgz":
            return True
        if path.is_symlink() or not path.is_file():
            continue
        if "templates" not in path.relative_to(chart_dir).parts:
            continue
        budget -= path.stat().st_size
        if budget < 0:
            return True
        if LOOKUP.search(path.read_bytes()):
            return True
    return False


async def checked_render(
    helm: ClusterHelm, gates: Gates, desired: DesiredRelease, chart_dir: Path, *, upgrade: bool
) -> str:
    """What the render check reads: the client-side render (hooks, `IsUpgrade`), plus,
    for a chart that calls `lookup`, a render with `lookup` answered by the cluster as
    the tenant. When that one fails (Helm 4 maps and reads every object), the
    client-side render is checked alone and the downstream RBAC stays the guard."""
    async with gates.slot():
        manifest = await helm.render(desired, chart_dir, upgrade=upgrade)
    if not await asyncio.to_thread(calls_lookup, chart_dir):
        return manifest
    try:
        async with gates.slot():
            seen = await helm.render(desired, chart_dir, upgrade=upgrade, server=True)
    except HelmFailure as failure:
        logger.info(
            "Release %s: the render with lookup from the cluster failed (%s); "
            "checking the client-side render",
            desired.key,
            failure.message,
        )
        return manifest
    return f"{manifest}\n---\n{seen}"


async def hooks_refused(
    helm: ClusterHelm, check: RenderCheck | None, namespace: str, name: str
) -> str:
    """Why the stored release's hooks must not run at its uninstall, else "". Read as
    the tenant (`helm`) and checked against its grants; an admin Stack's (`check` None)
    are not checked. Called by `herd.rollout.actions` before an uninstall."""
    if check is None:
        return ""
    hooks = await helm.hooks(namespace, name)
    if hooks is None:
        return "its hooks could not be read"
    try:
        refused = await check.problems(hooks, namespace)
    except Exception as error:  # hostile bytes: anything unparsable is refused
        return f"its hooks could not be checked ({type(error).__name__})"
    return f"its hooks are refused: {refused}" if refused else ""
