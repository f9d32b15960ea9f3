"""A Rancher-shaped management cluster: provisioning Clusters and their kubeconfig Secrets.

Role: make a plain kube-apiserver look, to Herd, like Rancher's local cluster. Rancher keeps
one namespaced ``clusters.provisioning.cattle.io`` object per downstream cluster (in
``fleet-default``); its status names the management cluster id (``clusterName``, e.g.
``c-m-abcd1234``), readiness and the kubeconfig Secret (``clientSecretName``). That Secret,
``<name>-kubeconfig``, holds the kubeconfig under ``value``, carries the Cluster API
``cluster.x-k8s.io/cluster-name`` label and is owned by the Cluster (as Rancher's
``pkg/provisioningv2/kubeconfig`` writes it; Rancher's extra ``token`` key is left out because
the test bed's kubeconfigs use client certificates). No Rancher code runs here: tests change
labels, readiness and credentials with the helpers below, as Rancher would.

Callers: e2e fixtures and the demo, once the test bed's control planes are up.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.config import new_client_from_config

GROUP = "provisioning.cattle.io"
VERSION = "v1"
PLURAL = "clusters"
CRD_NAME = f"{PLURAL}.{GROUP}"
CRD_MANIFEST = Path(__file__).resolve().parent / "manifests" / "provisioning-cluster-crd.yaml"
DEFAULT_NAMESPACE = "fleet-default"
CAPI_CLUSTER_LABEL = "cluster.x-k8s.io/cluster-name"
MERGE_PATCH = "application/merge-patch+json"

_CONFLICT = 409
_NOT_FOUND = 404


@dataclass
class RancherCluster:
    """One downstream cluster as Rancher would list it."""

    name: str
    cluster_id: str
    kubeconfig: Path
    labels: dict[str, str] = field(default_factory=dict)
    ready: bool = True

    @property
    def secret_name(self) -> str:
        return kubeconfig_secret_name(self.name)


def kubeconfig_secret_name(cluster_name: str) -> str:
    """Rancher's name for a provisioning cluster's kubeconfig Secret."""
    return f"{cluster_name}-kubeconfig"


def register_clusters(
    management_kubeconfig: Path,
    clusters: Sequence[RancherCluster],
    namespace: str = DEFAULT_NAMESPACE,
) -> None:
    """Install the provisioning CRD and publish each cluster with its kubeconfig Secret.

    Safe to repeat: existing objects are brought to the given labels, status and kubeconfig.
    """
    with api_client(management_kubeconfig) as api:
        _apply_crd(api)
        _ensure_namespace(api, namespace)
        for cluster in clusters:
            _register(api, cluster, namespace)


def set_labels(
    management_kubeconfig: Path,
    name: str,
    labels: Mapping[str, str],
    namespace: str = DEFAULT_NAMESPACE,
) -> None:
    """Replace a provisioning cluster's labels (labels not given are removed)."""
    with api_client(management_kubeconfig) as api:
        _replace_labels(client.CustomObjectsApi(api), name, labels, namespace)


def set_ready(
    management_kubeconfig: Path,
    name: str,
    ready: bool,
    namespace: str = DEFAULT_NAMESPACE,
) -> None:
    """Flip ``status.ready`` (and the Ready condition), as Rancher does when a cluster drops."""
    with api_client(management_kubeconfig) as api:
        _patch_status(client.CustomObjectsApi(api), name, namespace, _readiness(ready))


def set_conditions(
    management_kubeconfig: Path,
    name: str,
    conditions: Sequence[Mapping[str, str]],
    namespace: str = DEFAULT_NAMESPACE,
) -> None:
    """Replace ``status.conditions`` and leave ``status.ready`` alone, as Rancher does when a
    cluster's agent disconnects: it never sets ``ready`` back to false."""
    with api_client(management_kubeconfig) as api:
        status = {"conditions": [dict(condition) for condition in conditions]}
        _patch_status(client.CustomObjectsApi(api), name, namespace, status)


def rotate_kubeconfig(
    management_kubeconfig: Path,
    name: str,
    kubeconfig: Path,
    namespace: str = DEFAULT_NAMESPACE,
) -> None:
    """Put a new kubeconfig into the cluster's Secret, as Rancher does when it renews a token."""
    with api_client(management_kubeconfig) as api:
        client.CoreV1Api(api).patch_namespaced_secret(
            kubeconfig_secret_name(name),
            namespace,
            {"data": {"value": _b64(kubeconfig.read_bytes())}},
            _content_type=MERGE_PATCH,
        )


def unregister(
    management_kubeconfig: Path,
    name: str,
    namespace: str = DEFAULT_NAMESPACE,
) -> None:
    """Delete the provisioning cluster and its kubeconfig Secret; absent ones are fine.

    The Secret is deleted here rather than left to the garbage collector (which follows its
    owner reference only eventually), so both are gone when this returns.
    """
    with api_client(management_kubeconfig) as api:
        _ignoring(
            _NOT_FOUND,
            lambda: client.CustomObjectsApi(api).delete_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name
            ),
        )
        _ignoring(
            _NOT_FOUND,
            lambda: client.CoreV1Api(api).delete_namespaced_secret(
                kubeconfig_secret_name(name), namespace
            ),
        )


@contextmanager
def api_client(kubeconfig: Path) -> Iterator[client.ApiClient]:
    """A kubernetes API client for one kubeconfig file, closed on exit."""
    # persist_config=False: never write refreshed credentials back into the test bed's file.
    # The kubernetes client leaves these two functions unannotated.
    api: client.ApiClient = new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig), persist_config=False
    )
    try:
        yield api
    finally:
        api.close()  # type: ignore[no-untyped-call]


def _apply_crd(api: client.ApiClient, timeout: float = 30.0) -> None:
    extensions = client.ApiextensionsV1Api(api)
    manifest = client.V1CustomResourceDefinition.model_validate(
        yaml.safe_load(CRD_MANIFEST.read_text())
    )
    _ignoring(_CONFLICT, lambda: extensions.create_custom_resource_definition(manifest))
    _wait_established(extensions, timeout)


def _wait_established(extensions: client.ApiextensionsV1Api, timeout: float) -> None:
    # Creating objects of a CRD before it is Established fails with 404.
    deadline = time.monotonic() + timeout
    while not _is_established(extensions.read_custom_resource_definition(CRD_NAME)):
        if time.monotonic() > deadline:
            raise TimeoutError(f"CRD {CRD_NAME} not Established after {timeout:.0f}s")
        time.sleep(0.2)


def _is_established(crd: client.V1CustomResourceDefinition) -> bool:
    conditions = (crd.status.conditions if crd.status else None) or []
    return any(c.type == "Established" and c.status == "True" for c in conditions)


def _ensure_namespace(api: client.ApiClient, namespace: str) -> None:
    body = client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace))
    _ignoring(_CONFLICT, lambda: client.CoreV1Api(api).create_namespace(body))


def _register(api: client.ApiClient, cluster: RancherCluster, namespace: str) -> None:
    custom = client.CustomObjectsApi(api)
    uid = _create_or_relabel_cluster(custom, cluster, namespace)
    # The status subresource ignores status sent on create, so it is written separately.
    _patch_status(custom, cluster.name, namespace, _status(cluster, namespace))
    secret = _kubeconfig_secret(cluster, namespace, uid)
    _put_secret(client.CoreV1Api(api), namespace, cluster.secret_name, secret)


def _create_or_relabel_cluster(
    custom: client.CustomObjectsApi, cluster: RancherCluster, namespace: str
) -> str:
    """Create the provisioning Cluster, or bring an existing one to the wanted labels; its uid."""
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Cluster",
        "metadata": {"name": cluster.name, "namespace": namespace, "labels": cluster.labels},
        "spec": {},
    }
    try:
        created = _mapping(
            custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
        )
    except ApiException as error:
        if error.status != _CONFLICT:
            raise
        created = _replace_labels(custom, cluster.name, cluster.labels, namespace)
    return str(created["metadata"]["uid"])


def _replace_labels(
    custom: client.CustomObjectsApi, name: str, labels: Mapping[str, str], namespace: str
) -> dict[str, Any]:
    current = _mapping(custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name))
    # A merge patch only removes a label that is explicitly set to null.
    removed: dict[str, str | None] = {
        key: None for key in current["metadata"].get("labels") or {} if key not in labels
    }
    patch = {"metadata": {"labels": {**removed, **labels}}}
    return _mapping(
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name, patch, _content_type=MERGE_PATCH
        )
    )


def _patch_status(
    custom: client.CustomObjectsApi, name: str, namespace: str, status: dict[str, Any]
) -> None:
    custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, name, {"status": status}, _content_type=MERGE_PATCH
    )


def _status(cluster: RancherCluster, namespace: str) -> dict[str, Any]:
    return {
        "clusterName": cluster.cluster_id,
        "clientSecretName": cluster.secret_name,
        "fleetWorkspaceName": namespace,
        **_readiness(cluster.ready),
    }


def _readiness(ready: bool) -> dict[str, Any]:
    return {
        "ready": ready,
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
    }


def _kubeconfig_secret(cluster: RancherCluster, namespace: str, owner_uid: str) -> client.V1Secret:
    owner = client.V1OwnerReference(
        api_version=f"{GROUP}/{VERSION}", kind="Cluster", name=cluster.name, uid=owner_uid
    )
    metadata = client.V1ObjectMeta(
        name=cluster.secret_name,
        namespace=namespace,
        labels={CAPI_CLUSTER_LABEL: cluster.name},
        owner_references=[owner],
    )
    data = {"value": _b64(cluster.kubeconfig.read_bytes())}
    return client.V1Secret(metadata=metadata, type="Opaque", data=data)


def _put_secret(core: client.CoreV1Api, namespace: str, name: str, secret: client.V1Secret) -> None:
    try:
        core.create_namespaced_secret(namespace, secret)
    except ApiException as error:
        if error.status != _CONFLICT:
            raise
        core.replace_namespaced_secret(name, namespace, secret)


def _ignoring(status: int, call: Callable[[], object]) -> None:
    """Run an API call, treating one HTTP status (already exists / already gone) as success."""
    try:
        call()
    except ApiException as error:
        if error.status != status:
            raise


def _mapping(response: object) -> dict[str, Any]:
    """A custom-object response, which the client types only as ``object``."""
    if not isinstance(response, dict):
        raise TypeError(f"expected a JSON object from the API, got {type(response).__name__}")
    return response


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
