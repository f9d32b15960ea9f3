"""The readiness check of a stage's soak: is every object of a cluster's releases Current?

`ReadinessReader.first_unready` reads each release's rendered manifest (`helm get manifest`
at the deployed revision, cached per cluster, release and revision: a revision's manifest
never changes), lists its objects in the worker pool (`herd.plan.kstatus.manifest_objects`,
bounded and off the event loop: the manifest is data whoever writes the namespace
controls), then GETs each object that has a status and judges it by kstatus rules
(`herd.plan.kstatus.object_status`). Objects without a status (ConfigMaps, Secrets, RBAC,
...) are never read. A tenant release's objects are read only in its own namespace: a
manifest must not make Herd read, and echo, objects elsewhere. Reads are bounded in time.

Callers: `herd.rollout.checks` (through the engine's `ClusterProbe`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client

from herd.errors import TransientError
from herd.helm import worker
from herd.helm.client import ClusterHelm
from herd.helm.environment import HelmEnvironment
from herd.kube.client import API_ERRORS, NOT_FOUND, api_client_from_kubeconfig, api_error_summary
from herd.plan.checks import Unready
from herd.plan.kstatus import ObjectRef, Status, manifest_objects, object_status

logger = logging.getLogger(__name__)
_CACHE_LIMIT = 20000
# Kinds that have no status to judge: Current as soon as they exist (kstatus).
_NO_STATUS = frozenset(
    {
        "ConfigMap",
        "Secret",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "ClusterRole",
        "ClusterRoleBinding",
        "NetworkPolicy",
        "LimitRange",
        "ResourceQuota",
        "PriorityClass",
        "StorageClass",
        "Namespace",
        "CustomResourceDefinition",
        "Ingress",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "Endpoints",
    }
)


@dataclass(frozen=True)
class ReleaseToCheck:
    namespace: str
    name: str
    revision: int
    tenant: bool = False  # a tenant's release: only objects in its namespace are read


class ReadinessReader:
    """One per process: the manifests' object lists are cached across passes."""

    def __init__(self, env: HelmEnvironment, timeout: float = 10.0) -> None:
        self._env = env
        self._timeout = timeout
        self._objects: dict[tuple[str, str, str, int], list[ObjectRef]] = {}

    async def first_unready(
        self, cluster: str, kubeconfig: Path, releases: Sequence[ReleaseToCheck]
    ) -> Unready | None:
        """The first object not Current, and why ("release ns/name: Deployment ns/x:
        availableReplicas: 0 of 1"); None when all are. Raises `TransientError` when the
        cluster cannot be read (the evaluation is then not counted)."""
        listed = await asyncio.gather(  # the parses run in parallel in the worker pool
            *(self._release_objects(cluster, kubeconfig, r) for r in releases)
        )
        wanted: list[tuple[ReleaseToCheck, list[ObjectRef]]] = []
        for release, objects in zip(releases, listed, strict=True):
            mine = [o for o in objects if o.namespace == release.namespace or not release.tenant]
            wanted.append((release, [o for o in mine if o.kind not in _NO_STATUS]))
        return await asyncio.to_thread(_first_unready, kubeconfig, wanted, self._timeout)

    async def _release_objects(
        self, cluster: str, kubeconfig: Path, release: ReleaseToCheck
    ) -> list[ObjectRef]:
        key = (cluster, release.namespace, release.name, release.revision)
        if key in self._objects:
            return self._objects[key]
        helm = ClusterHelm(self._env, cluster, kubeconfig)
        try:
            manifest = await helm.manifest(release.namespace, release.name, release.revision)
        finally:
            helm.close()
        if manifest is None:
            raise TransientError(f"cannot read the manifest of {release.namespace}/{release.name}")
        try:
            objects = await worker.pool().run(
                "a release manifest", manifest_objects, manifest, release.namespace
            )
        except worker.WorkerError as error:
            raise TransientError(str(error)) from None
        if len(self._objects) >= _CACHE_LIMIT:
            self._objects.clear()
        self._objects[key] = objects
        return objects


def _first_unready(
    kubeconfig: Path, wanted: list[tuple[ReleaseToCheck, list[ObjectRef]]], timeout: float
) -> Unready | None:
    try:
        api = api_client_from_kubeconfig(kubeconfig)
    except Exception as error:  # a kubeconfig the client cannot use; never its content
        raise TransientError(f"kubeconfig unusable ({type(error).__name__})") from None
    try:
        paths = _Paths(api, timeout)
        for release, objects in wanted:
            for ref in objects:
                state, why = _judge(api, paths, ref, timeout)
                if state is not Status.CURRENT:
                    where = f"release {release.namespace}/{release.name}"
                    text = f"{where}: {ref} is {state.value}" + (f": {why}" if why else "")
                    return Unready(text, failed=state is Status.FAILED)
        return None
    except API_ERRORS as error:
        raise TransientError(f"cannot read objects: {api_error_summary(error)}") from None
    finally:
        api.close()  # type: ignore[no-untyped-call]


def _judge(
    api: client.ApiClient, paths: _Paths, ref: ObjectRef, timeout: float
) -> tuple[Status, str]:
    path = paths.of(ref)
    if path is None:  # a kind the API server does not serve (any more)
        return Status.CURRENT, ""
    try:
        body = _get(api, path, timeout)
    except client.ApiException as error:
        if error.status == NOT_FOUND:
            return Status.IN_PROGRESS, "not found"
        raise
    return object_status(body)


def _get(api: client.ApiClient, path: str, timeout: float) -> dict[str, Any]:
    response = api.call_api(
        *api.param_serialize(
            method="GET",
            resource_path=path,
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        ),
        _request_timeout=timeout,
    )
    data = response.read()  # type: ignore[no-untyped-call]
    parsed = json.loads(data)
    return parsed if isinstance(parsed, dict) else {}


class _Paths:
    """Object paths, from one discovery read per group/version (cached for the call)."""

    def __init__(self, api: client.ApiClient, timeout: float) -> None:
        self._api = api
        self._timeout = timeout
        self._served: dict[str, dict[str, tuple[str, bool]]] = {}

    def of(self, ref: ObjectRef) -> str | None:
        base = "/api/v1" if ref.api_version == "v1" else f"/apis/{ref.api_version}"
        resource = self._resources(base).get(ref.kind)
        if resource is None:
            return None
        plural, namespaced = resource
        if namespaced:
            return f"{base}/namespaces/{ref.namespace}/{plural}/{ref.name}"
        return f"{base}/{plural}/{ref.name}"

    def _resources(self, base: str) -> dict[str, tuple[str, bool]]:
        if base not in self._served:
            try:
                body = _get(self._api, base, self._timeout)
            except client.ApiException as error:
                if error.status != NOT_FOUND:
                    raise
                body = {}
            self._served[base] = {
                str(r.get("kind")): (str(r.get("name")), bool(r.get("namespaced")))
                for r in body.get("resources") or []
                if isinstance(r, dict) and "/" not in str(r.get("name"))
            }
        return self._served[base]
