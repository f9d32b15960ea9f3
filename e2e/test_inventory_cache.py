"""The inventory's cache by resourceVersion on the test bed: requests counted for real.

A Rancher-shaped management cluster lists three downstream clusters (provisioning Clusters
and their kubeconfig Secrets) and a namespace of plain kubeconfig Secrets lists two more.
The management client is wrapped by `RequestLog`, which records every HTTP request it sends
to the real API server. A no-op pass (list, then a kubeconfig file per cluster) must make
no per-cluster Secret GET and only the fixed list calls; a rotated Secret, a new and a
removed cluster must each be seen on the next pass.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from kubernetes import client

from e2e.testbed import rancher
from e2e.testbed.controlplane import Cluster as BedCluster
from e2e.testbed.counting import Request, RequestLog
from e2e.testbed.rancher import RancherCluster
from herd.clusters.inventory import Inventory
from herd.clusters.kubeconfigs import KubeconfigStore
from herd.clusters.sources import RancherSource, SecretSource
from herd.kube.client import api_client_from_kubeconfig
from herd.plan.clusters import Cluster

HERD_LABELS = {"herd.suse.com/cluster": "true"}
MERGE_PATCH = "application/merge-patch+json"


@pytest.fixture
def namespaces(management: BedCluster) -> Iterator[tuple[str, str]]:
    names = (f"fleet-{uuid.uuid4().hex[:8]}", f"herd-{uuid.uuid4().hex[:8]}")
    with rancher.api_client(management.kubeconfig) as api:
        core = client.CoreV1Api(api)
        for name in names:
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        yield names
        for name in names:
            core.delete_namespace(name)


@pytest.fixture
async def counted(
    management: BedCluster, downstream: list[BedCluster], namespaces: tuple[str, str]
) -> AsyncIterator[tuple[Inventory, RequestLog]]:
    fleet_ns, secrets_ns = namespaces
    clusters = [
        RancherCluster(f"r{i}", f"c-m-r{i}", bed.kubeconfig, {"n": str(i)})
        for i, bed in enumerate(downstream)
    ]
    rancher.register_clusters(management.kubeconfig, clusters, fleet_ns)
    for i, bed in enumerate(downstream[:2]):
        _put_secret(management, secrets_ns, f"s{i}", "kubeconfig" if i else "value", bed.kubeconfig)
    api = api_client_from_kubeconfig(management.kubeconfig)
    log = RequestLog(api)
    store = KubeconfigStore(api)
    sources = [RancherSource(api, [fleet_ns]), SecretSource(api, secrets_ns)]
    yield Inventory(sources, store), log
    store.close()
    api.close()  # type: ignore[no-untyped-call]


def _put_secret(
    management: BedCluster, namespace: str, name: str, key: str, kubeconfig: Path
) -> None:
    body = client.V1Secret(
        metadata=client.V1ObjectMeta(name=name, labels=HERD_LABELS),
        data={key: base64.b64encode(kubeconfig.read_bytes()).decode()},
    )
    with rancher.api_client(management.kubeconfig) as api:
        core = client.CoreV1Api(api)
        try:
            core.create_namespaced_secret(namespace, body)
        except client.ApiException as error:
            if error.status != 409:
                raise
            core.patch_namespaced_secret(name, namespace, body, _content_type=MERGE_PATCH)


async def _pass(inventory: Inventory, log: RequestLog) -> tuple[dict[str, Path], list[Request]]:
    """What a pass of the engine asks the inventory: the clusters, then each kubeconfig."""
    mark = log.mark()
    clusters: list[Cluster] = await inventory.clusters()
    paths = {c.id: await inventory.kubeconfig(c) for c in clusters}
    return paths, log.since(mark)


def _server(path: Path) -> str:
    with rancher.api_client(path) as api:
        return str(api.configuration.host)


async def test_a_no_op_pass_makes_no_secret_gets_and_changes_are_seen(
    management: BedCluster,
    downstream: list[BedCluster],
    namespaces: tuple[str, str],
    counted: tuple[Inventory, RequestLog],
) -> None:
    inventory, log = counted
    fleet_ns, secrets_ns = namespaces
    first, cold = await _pass(inventory, log)
    assert sorted(first) == ["c-m-r0", "c-m-r1", "c-m-r2", "s0", "s1"]
    # Cold: the Secret source lists once more, with data; the store reads each Secret once.
    assert sum(r.is_secret_get for r in cold) == 5
    assert sum(not r.metadata_only and r.path.endswith("/secrets") for r in cold) == 1

    again, no_op = await _pass(inventory, log)
    assert again == first
    assert not [r for r in no_op if r.is_secret_get]
    # Rancher Clusters, their Secrets (metadata-only), the cluster Secrets (metadata-only).
    assert [(r.method, r.path.rsplit("/", 1)[-1], r.metadata_only) for r in no_op] == [
        ("GET", "clusters", False),
        ("GET", "secrets", True),
        ("GET", "secrets", True),
    ]

    # A rotation (resourceVersion bump) of one Rancher and one plain Secret: one read each.
    rancher.rotate_kubeconfig(management.kubeconfig, "r0", downstream[2].kubeconfig, fleet_ns)
    _put_secret(management, secrets_ns, "s1", "kubeconfig", downstream[2].kubeconfig)
    rotated, reads = await _pass(inventory, log)
    gets = sorted(r.path.rsplit("/", 1)[-1] for r in reads if r.is_secret_get)
    assert gets == ["r0-kubeconfig", "s1"]
    assert rotated == first  # same files, new content
    assert _server(rotated["c-m-r0"]) == _server(rotated["s1"]) == downstream[2].server

    # A new cluster appears and a removed one disappears on the next pass.
    rancher.unregister(management.kubeconfig, "r1", fleet_ns)
    _put_secret(management, secrets_ns, "s2", "kubeconfig", downstream[0].kubeconfig)
    changed, _ = await _pass(inventory, log)
    assert sorted(changed) == ["c-m-r0", "c-m-r2", "s0", "s1", "s2"]
    assert _server(changed["s2"]) == downstream[0].server

    _, quiet = await _pass(inventory, log)
    assert len(quiet) == 3
    assert not [r for r in quiet if r.is_secret_get]


async def test_machine_plan_secrets_with_the_cluster_label_are_not_listed(
    management: BedCluster,
    namespaces: tuple[str, str],
    counted: tuple[Inventory, RequestLog],
) -> None:
    """Cluster API and Rancher's provider label per-machine Secrets (machine plans,
    bootstrap data) with `cluster.x-k8s.io/cluster-name` too: the kubeconfig Secret listing
    must stay one item per cluster however many machines there are."""
    inventory, log = counted
    fleet_ns, _ = namespaces
    first, _ = await _pass(inventory, log)
    label = {rancher.CAPI_CLUSTER_LABEL: "r0"}
    kinds = ["rke.cattle.io/machine-plan"] * 8
    kinds += ["rke.cattle.io/bootstrap", "cluster.x-k8s.io/secret"]
    with rancher.api_client(management.kubeconfig) as api:
        core = client.CoreV1Api(api)
        for i, kind in enumerate(kinds):
            metadata = client.V1ObjectMeta(name=f"r0-machine-{i}", labels=label)
            core.create_namespaced_secret(
                fleet_ns, client.V1Secret(metadata=metadata, type=kind, data={"plan": "e30="})
            )
        labelled = core.list_namespaced_secret(fleet_ns, label_selector=rancher.CAPI_CLUSTER_LABEL)
    assert len(labelled.items) == 3 + len(kinds)  # what a label-only listing would carry

    again, no_op = await _pass(inventory, log)

    assert again == first  # no cluster from a machine's Secret, and the same files
    listings = [r for r in no_op if r.path == f"/api/v1/namespaces/{fleet_ns}/secrets"]
    assert [(r.metadata_only, r.items) for r in listings] == [(True, 3)]
    assert not [r for r in no_op if r.is_secret_get]
