"""`charts[].crds: CreateReplace`: Herd applies a chart's CRDs itself, before helm runs.

helm creates the CRDs of a chart's `crds/` on install and never changes them afterwards.
With CreateReplace, just before a release's `helm upgrade --install`, `CrdStep` reads the
CRDs from the unpacked chart the pass pulled (`herd.helm.chart_crds`, subcharts included, parsed
once per chart and configuration) and applies each one server-side (`PATCH`,
`application/apply-patch+yaml`, `fieldManager=herd`, `force=true`: Herd takes over the
fields helm or a person set, as Flux's replace does), waits until the API server serves
them (`Established`, as helm waits for the CRDs it creates), then helm runs with
`--skip-crds`.

The apply acts as the identity the release's helm uses on that cluster: the kubeconfig's,
or for a tenant Stack its impersonated ServiceAccount (`herd.plan.tenancy.tenant_identity`),
which may write CRDs only when a ClusterGrant gives it `clusterScopedResources: true` (the
render check refuses the chart before that; the downstream RBAC answers 403 otherwise).
Every failure is that release's `HelmFailure`, naming the CRD and its file: a chart whose
crds/ holds something else, a forbidden or invalid CRD (permanent), an API server that does
not answer (transient). Nothing else is touched: no other release, no other cluster.

Callers: `herd.rollout.actions`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from herd.helm import worker
from herd.helm.chart_crds import CREATE_REPLACE, ChartCrdError, Crd, chart_crds
from herd.helm.failures import FailureKind, HelmFailure, api_failure
from herd.kube.client import API_ERRORS, api_client_from_kubeconfig, read_json
from herd.plan.releases import DesiredRelease
from herd.plan.tenancy import Identity

FIELD_MANAGER = "herd"
_APPLY = "application/apply-patch+yaml"
ESTABLISHED_SECONDS = 60.0  # helm's own wait for the CRDs it creates
_POLL_SECONDS = 0.2
_DETAIL_STATUSES = (400, 422)  # the API server says what is wrong with the CRD itself
logger = logging.getLogger(__name__)


class CrdStep:
    """The CRD step of one pass: CRDs read once per (chart directory, configuration)."""

    def __init__(self) -> None:
        self._read: dict[tuple[Path, str | None], asyncio.Task[list[Crd]]] = {}

    async def crds(self, desired: DesiredRelease, chart_dir: Path) -> list[Crd]:
        """The CRDs Herd applies for this release ([] unless CreateReplace).

        Raises a permanent `HelmFailure` when the chart's crds/ cannot be applied as is.
        """
        if desired.chart.crds != CREATE_REPLACE:
            return []
        key = (chart_dir, desired.config)
        if key not in self._read:
            self._read[key] = asyncio.ensure_future(  # tenant bytes: in a worker process
                worker.pool().run("reading the chart's CRDs", chart_crds, chart_dir, desired.values)
            )
        try:
            return await asyncio.shield(self._read[key])
        except worker.WorkerDied as error:  # killed (the controller stops?): not a verdict
            self._read.pop(key, None)
            raise HelmFailure(FailureKind.FAILED, f"crds: {error}", transient=True) from None
        except (ChartCrdError, worker.WorkerError) as error:
            raise HelmFailure(FailureKind.INVALID, f"crds: {error}", transient=False) from None

    async def apply(
        self, cluster: str, kubeconfig: Path, identity: Identity | None, crds: Sequence[Crd]
    ) -> None:
        """Apply `crds` on one cluster as `identity` (None: the kubeconfig's own)."""
        if crds:
            await asyncio.to_thread(_apply_all, kubeconfig, identity, crds)
            logger.info("Applied %d CRDs on cluster %s", len(crds), cluster)


def impersonation(identity: Identity | None) -> dict[str, str]:
    """The request headers that make a call act as `identity` (helm's --kube-as-*)."""
    if identity is None:
        return {}
    if len(identity.groups) > 1:
        # One header value per group would be needed; the client sends a dict of headers.
        raise ValueError(f"cannot impersonate {identity.user} with more than one group")
    headers = {"Impersonate-User": identity.user}
    if identity.groups:
        headers["Impersonate-Group"] = identity.groups[0]
    return headers


def _apply_all(kubeconfig: Path, identity: Identity | None, crds: Sequence[Crd]) -> None:
    api = api_client_from_kubeconfig(kubeconfig)
    try:
        extensions = client.ApiextensionsV1Api(api)
        headers = impersonation(identity)
        waiting: list[Crd] = []
        for crd in crds:
            try:
                applied = read_json(
                    extensions.patch_custom_resource_definition,
                    crd.name,
                    dict(crd.body),
                    field_manager=FIELD_MANAGER,
                    force=True,
                    _content_type=_APPLY,
                    _headers=headers,
                    _request_timeout=30,
                )
            except API_ERRORS as error:
                raise _failure(crd, identity, error) from None
            if not established(applied):
                waiting.append(crd)
        # As helm does after creating crds/: the chart's own objects of these kinds can be
        # created only once the API server serves them.
        deadline = time.monotonic() + ESTABLISHED_SECONDS
        for crd in waiting:
            _wait_established(extensions, crd, identity, headers, deadline)
    finally:
        api.close()  # type: ignore[no-untyped-call]


def established(body: Mapping[str, Any]) -> bool:
    """True when a CRD's status says the API server serves its kinds."""
    conditions = (body.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)


def _wait_established(
    extensions: client.ApiextensionsV1Api,
    crd: Crd,
    identity: Identity | None,
    headers: dict[str, str],
    deadline: float,
) -> None:
    while True:
        try:
            body = read_json(
                extensions.read_custom_resource_definition,
                crd.name,
                _headers=headers,
                _request_timeout=30,
            )
        except API_ERRORS as error:
            raise _failure(crd, identity, error) from None
        if established(body):
            return
        if time.monotonic() > deadline:
            raise HelmFailure(
                FailureKind.API_TIMEOUT,
                f"CRD {crd.name} (from {crd.source}) not established "
                f"{ESTABLISHED_SECONDS:.0f} s after it was applied",
                transient=True,
            )
        time.sleep(_POLL_SECONDS)


def _failure(crd: Crd, identity: Identity | None, error: Exception) -> HelmFailure:
    status = error.status if isinstance(error, ApiException) else None
    detail = _detail(error) if status in _DETAIL_STATUSES else ""
    as_whom = f" as {identity.user}" if identity is not None else ""
    return api_failure(
        f"cannot apply CRD {crd.name} (from {crd.source}){as_whom}",
        status,
        detail,
        forbidden_hint=(
            "the tenant may create cluster-scoped objects only with a ClusterGrant that has "
            "clusterScopedResources: true"
            if identity is not None
            else ""
        ),
    )


def _detail(error: Exception) -> str:
    """The API server's own message about an invalid CRD (the chart's text, not a secret)."""
    body: Any = getattr(error, "body", None)
    try:
        status: Mapping[str, Any] = json.loads(body or "{}")
    except (TypeError, ValueError):
        return ""
    message = status.get("message") if isinstance(status, dict) else None
    return str(message) if message else ""
