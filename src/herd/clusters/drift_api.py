"""The downstream requests of drift handling, one function per request. Everything blocks.

- `list_metadata`: one metadata-only list of a kind in a namespace, selected by helm's
  `app.kubernetes.io/managed-by=Helm` label (name -> resourceVersion, generation);
- `get_object`: one full read (None when it is gone);
- `apply_object`: a server-side apply as helm's field manager (`HELM_FIELD_MANAGER`, what
  helm 4 names itself: `cmd/helm/helm.go` sets `kube.ManagedFieldsManager = "helm"`),
  forcing conflicts so a field another manager took over comes back to helm;
- `delete_object`: for an immutable field, with `force`;
- `release_manifest`: the manifest of one stored helm release revision (its Secret,
  decoded as hostile data by `herd.helm.release_secret.decode_release`); read as Herd,
  never as the tenant.

Errors are `DriftRequestError` with the HTTP status and a safe one-line text (never a
body, which may hold a Secret's data). Callers: `herd.clusters.drift`,
`herd.rollout.rollback` (`stored_release`).
"""

from __future__ import annotations

import json
from typing import Any, cast

from kubernetes import client

from herd.clusters.drift_paths import collection_path, object_path
from herd.errors import TransientError
from herd.helm.release_secret import ReleaseDataError, decode_release, secret_name, stored_manifest
from herd.kube.client import API_ERRORS, api_error_summary
from herd.plan.drift import ObjectRef

HELM_FIELD_MANAGER = "helm"
MANAGED_BY = "app.kubernetes.io/managed-by=Helm"
TIMEOUT = 30
_METADATA_ONLY = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
_OK_MIN, _OK_MAX = 200, 299


class DriftRequestError(TransientError):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status


def _call(
    api: client.ApiClient,
    method: str,
    path: str,
    *,
    query: list[tuple[str, str]] | None = None,
    headers: dict[str, str] | None = None,
    body: dict[str, Any] | None = None,
) -> Any:
    request = api.param_serialize(
        method=method,
        resource_path=path,
        query_params=query or [],
        header_params={"Accept": "application/json", **(headers or {})},
        body=json.dumps(body) if body is not None else None,  # sent as is (apply-patch)
        auth_settings=["BearerToken"],
    )
    try:
        response = api.call_api(*request, _request_timeout=TIMEOUT)
        data = cast(bytes, response.read())  # type: ignore[no-untyped-call]
    except API_ERRORS as error:
        raise DriftRequestError(0, api_error_summary(error)) from None
    status = int(response.status)
    if not _OK_MIN <= status <= _OK_MAX:
        raise DriftRequestError(status, f"HTTP {status} {response.reason or ''}".strip())
    return json.loads(data)


def list_metadata(
    api: client.ApiClient, api_version: str, kind: str, namespace: str
) -> dict[str, tuple[str, int | None]]:
    """name -> (resourceVersion, generation) of helm's objects of a kind in a namespace."""
    body = _call(
        api,
        "GET",
        collection_path(api_version, kind, namespace),
        query=[("labelSelector", MANAGED_BY)],
        headers={"Accept": _METADATA_ONLY},
    )
    out: dict[str, tuple[str, int | None]] = {}
    for item in body.get("items") or []:
        meta = item.get("metadata") or {}
        out[str(meta.get("name"))] = (str(meta.get("resourceVersion")), meta.get("generation"))
    return out


def get_object(api: client.ApiClient, ref: ObjectRef) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = _call(api, "GET", object_path(ref))
    except DriftRequestError as error:
        if error.status == 404:
            return None
        raise
    return found


def apply_object(api: client.ApiClient, ref: ObjectRef, obj: dict[str, Any]) -> dict[str, Any]:
    applied: dict[str, Any] = _call(
        api,
        "PATCH",
        object_path(ref),
        query=[("fieldManager", HELM_FIELD_MANAGER), ("force", "true")],
        headers={"Content-Type": "application/apply-patch+yaml"},
        body=obj,
    )
    return applied


def delete_object(api: client.ApiClient, ref: ObjectRef) -> None:
    _call(api, "DELETE", object_path(ref), query=[("propagationPolicy", "Background")])


def stored_release(api: client.ApiClient, namespace: str, name: str, revision: int) -> Any:
    """One stored release revision (helm's Secret storage driver), decoded as hostile data
    (`decode_release`): the rollback's check of a recorded revision reads it too."""
    path = f"/api/v1/namespaces/{namespace}/secrets/{secret_name(name, revision)}"
    secret = _call(api, "GET", path)
    try:
        return decode_release((secret.get("data") or {}).get("release", ""))
    except ReleaseDataError as error:
        raise DriftRequestError(0, str(error)) from None


def release_manifest(api: client.ApiClient, namespace: str, name: str, revision: int) -> str:
    """The manifest helm stored for `name` at `revision` (helm's Secret storage driver)."""
    return stored_manifest(stored_release(api, namespace, name, revision))
