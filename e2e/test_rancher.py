"""The Rancher-shaped management cluster: objects laid out as Rancher lays them out.

Runs against the test bed's real kube-apiservers. Herd's Rancher discovery reads exactly
this layout, so these tests pin it: provisioning Clusters with their status, kubeconfig
Secrets under ``value`` that really open the downstream cluster, and the helpers that
tests use to change labels, readiness and credentials. Each test works in a namespace of
its own, so the session-wide management cluster stays clean for other tests.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.config import new_client_from_config_dict

from e2e.testbed import rancher
from e2e.testbed.controlplane import Cluster
from e2e.testbed.rancher import RancherCluster


@pytest.fixture
def namespace(management: Cluster) -> Iterator[str]:
    name = f"fleet-{uuid.uuid4().hex[:8]}"
    yield name
    with rancher.api_client(management.kubeconfig) as api:
        try:
            client.CoreV1Api(api).delete_namespace(name)
        except ApiException as error:
            if error.status != 404:
                raise


@pytest.fixture
def registered(
    management: Cluster, downstream: list[Cluster], namespace: str
) -> list[RancherCluster]:
    clusters = [
        RancherCluster("prod-gpu", "c-m-prod0001", downstream[0].kubeconfig, {"env": "prod"}),
        RancherCluster("dev", "c-m-dev00001", downstream[1].kubeconfig, {"env": "dev"}, False),
    ]
    rancher.register_clusters(management.kubeconfig, clusters, namespace)
    return clusters


@contextmanager
def _client_from_text(kubeconfig: str) -> Iterator[client.ApiClient]:
    """A client for a kubeconfig held in memory, as Herd reads it from the Secret."""
    api: client.ApiClient = new_client_from_config_dict(  # type: ignore[no-untyped-call]
        yaml.safe_load(kubeconfig), persist_config=False
    )
    try:
        yield api
    finally:
        api.close()  # type: ignore[no-untyped-call]


def _cluster_object(management: Cluster, namespace: str, name: str) -> dict[str, Any]:
    with rancher.api_client(management.kubeconfig) as api:
        found = client.CustomObjectsApi(api).get_namespaced_custom_object(
            rancher.GROUP, rancher.VERSION, namespace, rancher.PLURAL, name
        )
    assert isinstance(found, dict)
    return found


def _secret(management: Cluster, namespace: str, name: str) -> client.V1Secret:
    with rancher.api_client(management.kubeconfig) as api:
        return client.CoreV1Api(api).read_namespaced_secret(name, namespace)


def _kubeconfig_in(secret: client.V1Secret) -> str:
    assert secret.data is not None
    return base64.b64decode(secret.data["value"]).decode()


def test_clusters_carry_rancher_status_and_labels(
    management: Cluster, namespace: str, registered: list[RancherCluster]
) -> None:
    prod = _cluster_object(management, namespace, "prod-gpu")
    dev = _cluster_object(management, namespace, "dev")

    assert prod["metadata"]["labels"] == {"env": "prod"}
    assert prod["status"]["clusterName"] == "c-m-prod0001"
    assert prod["status"]["clientSecretName"] == "prod-gpu-kubeconfig"
    assert prod["status"]["ready"] is True
    assert dev["status"]["ready"] is False


def test_kubeconfig_secret_opens_the_downstream_cluster(
    management: Cluster,
    downstream: list[Cluster],
    namespace: str,
    registered: list[RancherCluster],
) -> None:
    secret = _secret(management, namespace, "prod-gpu-kubeconfig")

    assert secret.type == "Opaque"
    assert secret.metadata is not None and secret.metadata.labels is not None
    assert secret.metadata.labels[rancher.CAPI_CLUSTER_LABEL] == "prod-gpu"
    with _client_from_text(_kubeconfig_in(secret)) as api:
        assert api.configuration.host == downstream[0].server
        client.CoreV1Api(api).list_namespace()


def test_set_labels_replaces_the_label_set(
    management: Cluster, namespace: str, registered: list[RancherCluster]
) -> None:
    rancher.set_labels(management.kubeconfig, "prod-gpu", {"gpu": "true"}, namespace)

    labels = _cluster_object(management, namespace, "prod-gpu")["metadata"]["labels"]
    assert labels == {"gpu": "true"}


def test_set_ready_flips_status_ready(
    management: Cluster, namespace: str, registered: list[RancherCluster]
) -> None:
    rancher.set_ready(management.kubeconfig, "dev", True, namespace)

    status = _cluster_object(management, namespace, "dev")["status"]
    assert status["ready"] is True
    assert status["clusterName"] == "c-m-dev00001"  # the rest of status survives


def test_rotate_kubeconfig_replaces_the_secret_value(
    management: Cluster,
    downstream: list[Cluster],
    namespace: str,
    registered: list[RancherCluster],
) -> None:
    rancher.rotate_kubeconfig(management.kubeconfig, "dev", downstream[2].kubeconfig, namespace)

    secret = _secret(management, namespace, "dev-kubeconfig")
    assert _kubeconfig_in(secret) == downstream[2].kubeconfig.read_text()


def test_register_again_is_idempotent_and_updates_labels(
    management: Cluster, namespace: str, registered: list[RancherCluster]
) -> None:
    relabelled = RancherCluster("prod-gpu", "c-m-prod0001", registered[0].kubeconfig, {"a": "b"})

    rancher.register_clusters(management.kubeconfig, [relabelled], namespace)

    assert _cluster_object(management, namespace, "prod-gpu")["metadata"]["labels"] == {"a": "b"}


def test_unregister_removes_cluster_and_secret(
    management: Cluster, namespace: str, registered: list[RancherCluster]
) -> None:
    rancher.unregister(management.kubeconfig, "dev", namespace)
    rancher.unregister(management.kubeconfig, "dev", namespace)  # already gone is fine

    with pytest.raises(ApiException) as cluster_lookup:
        _cluster_object(management, namespace, "dev")
    with pytest.raises(ApiException) as secret_lookup:
        _secret(management, namespace, "dev-kubeconfig")
    assert cluster_lookup.value.status == secret_lookup.value.status == 404
