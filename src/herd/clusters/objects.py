"""Kubernetes objects (as plain JSON dicts) → `Cluster`: the Rancher and Secret layouts.

Pure: takes the bodies the API returns (or kopf hands to a watch handler) and reads only
metadata, status and the *names* of Secret keys — never Secret values. Callers:
`herd.clusters.sources` after listing, and the operator's watch handlers, so both see a
cluster the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from herd.names import (
    CLUSTER_ID_ANNOTATION,
    CLUSTER_SECRET_LABEL,
    PREFIX,
    PROMETHEUS_URL_ANNOTATION,
)
from herd.plan.clusters import Cluster, KubeconfigRef

RANCHER_GROUP = "provisioning.cattle.io"
RANCHER_VERSION = "v1"
RANCHER_PLURAL = "clusters"
RANCHER_NAMESPACE = "fleet-default"
RANCHER_NAMESPACES = ("fleet-default", "fleet-local")  # Fleet's default and local workspaces
RANCHER_SECRET_KEY = "value"
# Rancher (pkg/provisioningv2/kubeconfig) labels each Cluster's kubeconfig Secret with it and
# leaves its type Opaque. Cluster API and Rancher's CAPI provider put the same label on
# machine-plan, bootstrap and cluster-state Secrets, one or more per *machine*, each with a
# type of its own: the type field selector keeps the listing to about one per cluster.
RANCHER_SECRET_SELECTOR = "cluster.x-k8s.io/cluster-name"
RANCHER_SECRET_FIELDS = "type=Opaque"
# `status.ready` is never set back to false once a cluster connected (Rancher's
# pkg/controllers/provisioningv2/cluster: "we will end up deleting the secret"); these
# conditions do go False when the agent's tunnel drops or the cluster breaks. For an
# imported cluster they are on the *management* Cluster (`management.cattle.io/v3`, named
# by the provisioning Cluster's `status.clusterName`; pkg/controllers/management/
# clusterconnected), not on the provisioning one, whose conditions stay as they were.
RANCHER_READY_CONDITIONS = ("Connected", "Ready")
RANCHER_MANAGEMENT_GROUP = "management.cattle.io"
RANCHER_MANAGEMENT_VERSION = "v3"

CLUSTER_SECRET_SELECTOR = f"{CLUSTER_SECRET_LABEL}=true"
CLUSTER_SECRET_KEYS = ("kubeconfig", "value")


def rancher_cluster(
    body: Mapping[str, Any], management: Mapping[str, Any] | None = None
) -> Cluster:
    """A `provisioning.cattle.io/v1` Cluster: id `status.clusterName`, kubeconfig Secret
    `status.clientSecretName` (default `<name>-kubeconfig`) key `value`. `management`:
    the management Cluster of that id, when listed (its conditions tell readiness).

    A cluster still being provisioned has no `clusterName` yet: it is listed under its
    name and as not ready, so a Stack naming it says "not ready" rather than "unknown".
    A cluster being deleted is not ready either: nothing new is deployed to it.
    """
    metadata = body.get("metadata") or {}
    status = body.get("status") or {}
    name = str(metadata.get("name", ""))
    namespace = str(metadata.get("namespace") or RANCHER_NAMESPACE)
    cluster_id = str(status.get("clusterName") or "")
    secret = str(status.get("clientSecretName") or f"{name}-kubeconfig")
    not_ready = rancher_not_ready(body, management)
    return Cluster(
        id=cluster_id or name,
        name=name,
        labels=_labels(metadata),
        ready=not not_ready,
        source="rancher",
        kubeconfig=KubeconfigRef.secret(namespace, secret, RANCHER_SECRET_KEY),
        not_ready=not_ready,
        prometheus_url=_prometheus_url(metadata),
    )


def rancher_not_ready(body: Mapping[str, Any], management: Mapping[str, Any] | None = None) -> str:
    """Why a provisioning Cluster cannot be deployed to now ("" when it can).

    Ready needs a management id, `status.ready` (the kubeconfig Secret exists from then on),
    no deletion, and none of `RANCHER_READY_CONDITIONS` False, on the provisioning Cluster
    or on its `management` Cluster: a condition Rancher has not written yet does not count
    against the cluster, since `status.ready` already says it connected once.
    """
    metadata = body.get("metadata") or {}
    status = body.get("status") or {}
    if metadata.get("deletionTimestamp"):
        return "being deleted"
    for source in (body, management or {}):
        why = _false_condition(source)
        if why:
            return why
    if not status.get("clusterName") or status.get("ready") is not True:
        return "not connected to Rancher yet (status.ready is not true)"
    return ""


def _false_condition(body: Mapping[str, Any]) -> str:
    conditions = {
        str(item.get("type")): item
        for item in (body.get("status") or {}).get("conditions") or []
        if isinstance(item, Mapping)
    }
    return "; ".join(
        _condition_text(kind, conditions[kind])
        for kind in RANCHER_READY_CONDITIONS
        if kind in conditions and str(conditions[kind].get("status")) == "False"
    )


def _condition_text(kind: str, condition: Mapping[str, Any]) -> str:
    # Rancher's condition messages are its own text about the cluster (no credentials);
    # capped, since a long one would crowd a status row.
    detail = str(condition.get("message") or condition.get("reason") or "").strip()
    text = f"condition {kind} is False"
    return f"{text}: {detail[:200]}" if detail else text


def secret_cluster(body: Mapping[str, Any], key: str | None = None) -> Cluster:
    """A kubeconfig Secret labelled `herd.suse.com/cluster=true`: id from the
    `herd.suse.com/cluster-id` annotation (default: the Secret's name), labels = its labels
    minus `herd.suse.com/*`, kubeconfig under `kubeconfig` (or else `value`).

    Such a cluster is always ready: a Secret says nothing about the cluster's health, and an
    unusable kubeconfig is reported when the kubeconfig store reads it. `key`: the data key
    as an earlier full read found it, for a metadata-only `body` (`herd.clusters.versions`).
    """
    metadata = body.get("metadata") or {}
    name = str(metadata.get("name", ""))
    annotations = metadata.get("annotations") or {}
    if key is None:
        key = secret_key(body)
    labels = {k: v for k, v in _labels(metadata).items() if not k.startswith(PREFIX)}
    return Cluster(
        id=str(annotations.get(CLUSTER_ID_ANNOTATION) or name),
        name=name,
        labels=labels,
        ready=True,
        source="secret",
        kubeconfig=KubeconfigRef.secret(
            str(metadata.get("namespace", "")),
            name,
            key,
            str(metadata.get("resourceVersion", "")),
        ),
        prometheus_url=_prometheus_url(metadata),
    )


def secret_key(body: Mapping[str, Any]) -> str:
    """The data key of a cluster Secret that holds the kubeconfig (names only are read)."""
    keys = set((body.get("data") or {}).keys()) | set((body.get("stringData") or {}).keys())
    return next((key for key in CLUSTER_SECRET_KEYS if key in keys), CLUSTER_SECRET_KEYS[0])


def _prometheus_url(metadata: Mapping[str, Any]) -> str:
    # Checked where it is used (`herd.addons.prometheus.PrometheusUrl`), so that a bad URL
    # fails that cluster's metric checks, not its listing; capped like any annotation.
    annotations = metadata.get("annotations") or {}
    return str(annotations.get(PROMETHEUS_URL_ANNOTATION) or "").strip()[:2048]


def _labels(metadata: Mapping[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in (metadata.get("labels") or {}).items()}
