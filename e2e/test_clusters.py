"""herd.clusters on the test bed: Rancher and Secret discovery, kubeconfig files, leaks.

Real kube-apiservers: a Rancher-shaped management cluster whose provisioning Clusters and
kubeconfig Secrets point at the three downstream clusters. Every kubeconfig Herd writes
is proven by opening its downstream cluster with it. Each test works in namespaces of its
own, so the session-wide management cluster stays clean.
"""

from __future__ import annotations

import base64
import logging
import stat
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from e2e.testbed import rancher
from e2e.testbed.controlplane import Cluster as BedCluster
from e2e.testbed.rancher import RancherCluster
from herd.api import Targets
from herd.clusters.inventory import Inventory
from herd.clusters.kubeconfigs import KubeconfigStore
from herd.clusters.sources import RancherSource, SecretSource
from herd.errors import TransientError
from herd.kube.client import api_client_from_kubeconfig
from herd.operator.index import TargetIndex
from herd.plan.clusters import Cluster, ClusterUnavailable
from herd.plan.targets import resolve_targets

MERGE_PATCH = "application/merge-patch+json"


@pytest.fixture
def management_api(management: BedCluster) -> Iterator[client.ApiClient]:
    api = api_client_from_kubeconfig(management.kubeconfig)
    yield api
    api.close()  # type: ignore[no-untyped-call]


def _fresh_namespace(management: BedCluster, prefix: str) -> Iterator[str]:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    with rancher.api_client(management.kubeconfig) as api:
        client.CoreV1Api(api).create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=name))
        )
    yield name
    with rancher.api_client(management.kubeconfig) as api:
        try:
            client.CoreV1Api(api).delete_namespace(name)
        except ApiException as error:
            if error.status != 404:
                raise


@pytest.fixture
def fleet_ns(management: BedCluster) -> Iterator[str]:
    yield from _fresh_namespace(management, "fleet")


@pytest.fixture
def secrets_ns(management: BedCluster) -> Iterator[str]:
    yield from _fresh_namespace(management, "herd")


@pytest.fixture
def fleet(
    management: BedCluster, downstream: list[BedCluster], fleet_ns: str
) -> list[RancherCluster]:
    """Three downstream clusters, labelled differently, as Rancher lists them."""
    labels = ({"env": "prod", "gpu": "true"}, {"env": "prod"}, {"env": "dev", "tier": "x"})
    names = (("prod-gpu", "c-m-prod0001"), ("prod-cpu", "c-m-prod0002"), ("dev", "c-m-dev00001"))
    clusters = [
        RancherCluster(name, cluster_id, bed.kubeconfig, dict(label_set))
        for (name, cluster_id), bed, label_set in zip(names, downstream, labels, strict=True)
    ]
    rancher.register_clusters(management.kubeconfig, clusters, fleet_ns)
    return clusters


@pytest.fixture
async def store(management_api: client.ApiClient) -> AsyncIterator[KubeconfigStore]:
    store = KubeconfigStore(management_api)
    yield store
    store.close()
    assert not store.directory.exists()


async def _rancher_clusters(api: client.ApiClient, namespace: str) -> dict[str, Cluster]:
    return {c.name: c for c in await RancherSource(api, [namespace]).list_clusters()}


def _server_of(kubeconfig: Path) -> str:
    with rancher.api_client(kubeconfig) as api:
        # Opening the cluster proves the credentials; the host tells which cluster it is.
        client.CoreV1Api(api).list_namespace(limit=1)
        return str(api.configuration.host)


def _secret_material(*kubeconfigs: Path) -> list[str]:
    """Pieces of each kubeconfig's client certificate and key, as in the kubeconfig (base64,
    whose first 40 characters are shared by every PEM blob) and as PEM (decoded)."""
    pieces: list[str] = []
    for path in kubeconfigs:
        document = yaml.safe_load(path.read_text())
        for user in document["users"]:
            for field in ("client-certificate-data", "client-key-data"):
                encoded = user["user"][field]
                pem_body = base64.b64decode(encoded).decode().splitlines()[1]
                pieces += [encoded[:40], encoded[120:160], encoded[-40:], pem_body[:40]]
    return pieces


async def test_rancher_source_lists_the_fleet(
    management_api: client.ApiClient, fleet_ns: str, fleet: list[RancherCluster]
) -> None:
    clusters = await RancherSource(management_api, [fleet_ns]).list_clusters()

    assert sorted((c.id, c.name, dict(c.labels), c.ready, c.source) for c in clusters) == [
        ("c-m-dev00001", "dev", {"env": "dev", "tier": "x"}, True, "rancher"),
        ("c-m-prod0001", "prod-gpu", {"env": "prod", "gpu": "true"}, True, "rancher"),
        ("c-m-prod0002", "prod-cpu", {"env": "prod"}, True, "rancher"),
    ]
    gpu = next(c for c in clusters if c.name == "prod-gpu")
    assert gpu.kubeconfig.describe() == f"Secret {fleet_ns}/prod-gpu-kubeconfig, key value"


def where(key: str, operator: str, *values: str) -> dict[str, Any]:
    expression = {"key": key, "operator": operator, "values": list(values)}
    return {"selector": {"matchExpressions": [expression]}}


PROD_IDS = ["c-m-prod0001", "c-m-prod0002"]


@pytest.mark.parametrize(
    ("targets", "ids", "skipped"),
    [
        ({"clusterIds": ["c-m-prod0002", "dev"]}, ["c-m-dev00001", "c-m-prod0002"], []),
        ({"selector": {"matchLabels": {"env": "prod"}}}, PROD_IDS, []),
        (where("env", "In", "dev", "qa"), ["c-m-dev00001"], []),
        (where("env", "NotIn", "dev"), PROD_IDS, []),
        (where("gpu", "Exists"), ["c-m-prod0001"], []),
        (where("gpu", "DoesNotExist"), ["c-m-dev00001", "c-m-prod0002"], []),
        (  # union, and an unknown id
            {"clusterIds": ["dev", "c-m-nope"], "selector": {"matchLabels": {"gpu": "true"}}},
            ["c-m-dev00001", "c-m-prod0001"],
            ["c-m-nope"],
        ),
    ],
)
async def test_targets_resolve_against_the_listed_fleet(
    management_api: client.ApiClient,
    fleet_ns: str,
    fleet: list[RancherCluster],
    targets: dict[str, Any],
    ids: list[str],
    skipped: list[str],
) -> None:
    clusters = await RancherSource(management_api, [fleet_ns]).list_clusters()

    resolution = resolve_targets(Targets.model_validate(targets), clusters)

    assert resolution.cluster_ids == ids
    assert [row.cluster_id for row in resolution.skipped] == skipped


async def test_not_ready_cluster_is_skipped_and_relabel_is_followed(
    management: BedCluster,
    management_api: client.ApiClient,
    fleet_ns: str,
    fleet: list[RancherCluster],
) -> None:
    prod = Targets.model_validate({"selector": {"matchLabels": {"env": "prod"}}})
    index = TargetIndex()
    index.set(("apps", "prod"), prod)
    before = await _rancher_clusters(management_api, fleet_ns)

    rancher.set_ready(management.kubeconfig, "prod-cpu", False, fleet_ns)
    rancher.set_labels(management.kubeconfig, "dev", {"env": "prod"}, fleet_ns)
    after = await _rancher_clusters(management_api, fleet_ns)

    resolution = resolve_targets(prod, list(after.values()))
    assert resolution.cluster_ids == ["c-m-dev00001", "c-m-prod0001"]
    assert [(r.cluster_id, r.reason) for r in resolution.skipped] == [
        ("c-m-prod0002", "cluster prod-cpu is not ready: condition Ready is False")
    ]
    assert index.affected(before["dev"], after["dev"]) == {("apps", "prod")}  # starts matching
    assert index.affected(before["prod-cpu"], after["prod-cpu"]) == {("apps", "prod")}
    assert index.affected(before["prod-gpu"], after["prod-gpu"]) == set()


async def test_a_disconnected_cluster_that_still_says_ready_is_skipped_with_the_reason(
    management: BedCluster,
    management_api: client.ApiClient,
    fleet_ns: str,
    fleet: list[RancherCluster],
) -> None:
    """Rancher keeps `status.ready: true` after a cluster's agent disconnects; the
    Connected condition tells."""
    disconnected = [
        {"type": "Ready", "status": "True"},
        {"type": "Connected", "status": "False", "message": "cluster agent disconnected"},
    ]
    rancher.set_conditions(management.kubeconfig, "prod-cpu", disconnected, fleet_ns)
    listed = await _rancher_clusters(management_api, fleet_ns)
    with rancher.api_client(management.kubeconfig) as api:
        body = client.CustomObjectsApi(api).get_namespaced_custom_object(
            rancher.GROUP, rancher.VERSION, fleet_ns, rancher.PLURAL, "prod-cpu"
        )
    assert body["status"]["ready"] is True

    prod = Targets.model_validate({"selector": {"matchLabels": {"env": "prod"}}})
    resolution = resolve_targets(prod, list(listed.values()))

    assert resolution.cluster_ids == ["c-m-prod0001"]
    assert [(r.cluster_id, r.reason) for r in resolution.skipped] == [
        (
            "c-m-prod0002",
            "cluster prod-cpu is not ready: condition Connected is False: "
            "cluster agent disconnected",
        )
    ]

    rancher.set_conditions(management.kubeconfig, "prod-cpu", [], fleet_ns)
    reconnected = await _rancher_clusters(management_api, fleet_ns)
    assert reconnected["prod-cpu"].ready is True


async def test_store_writes_private_kubeconfigs_that_open_each_cluster(
    management_api: client.ApiClient,
    downstream: list[BedCluster],
    fleet_ns: str,
    fleet: list[RancherCluster],
    store: KubeconfigStore,
) -> None:
    clusters = await _rancher_clusters(management_api, fleet_ns)

    paths = {name: await store.path(cluster) for name, cluster in clusters.items()}

    assert stat.S_IMODE(store.directory.stat().st_mode) == 0o700
    for name, bed in zip(("prod-gpu", "prod-cpu", "dev"), downstream, strict=True):
        assert paths[name].parent == store.directory
        assert stat.S_IMODE(paths[name].stat().st_mode) == 0o600
        assert _server_of(paths[name]) == bed.server
    assert len(set(paths.values())) == 3


async def test_rotation_rewrites_the_same_file_and_unchanged_secret_is_reused(
    management: BedCluster,
    management_api: client.ApiClient,
    downstream: list[BedCluster],
    fleet_ns: str,
    fleet: list[RancherCluster],
    store: KubeconfigStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="herd")
    dev = (await _rancher_clusters(management_api, fleet_ns))["dev"]
    path = await store.path(dev)
    written = path.stat().st_mtime_ns
    assert await store.path(dev) == path
    assert path.stat().st_mtime_ns == written  # unchanged Secret: file left alone

    rancher.rotate_kubeconfig(management.kubeconfig, "dev", downstream[0].kubeconfig, fleet_ns)
    # The next listing carries the Secret's new resourceVersion (herd.clusters.versions).
    dev = (await _rancher_clusters(management_api, fleet_ns))["dev"]
    rotated = await store.path(dev)

    assert rotated == path
    assert _server_of(rotated) == downstream[0].server  # the new kubeconfig is used
    assert (
        f"Kubeconfig of cluster c-m-dev00001 (dev) changed (Secret {fleet_ns}/dev-kubeconfig"
        in caplog.text
    )


async def _patch_secret(
    management: BedCluster, namespace: str, name: str, data: dict[str, Any]
) -> None:
    with rancher.api_client(management.kubeconfig) as api:
        client.CoreV1Api(api).patch_namespaced_secret(
            name, namespace, {"data": data}, _content_type=MERGE_PATCH
        )


GARBAGE = b"not-a-kubeconfig: s3cr3t-t0ken-do-not-print\nclusters: {"


IN_SECRET = "the kubeconfig in Secret {ns}/dev-kubeconfig, key value"


@pytest.mark.parametrize(
    ("breakage", "reason"),
    [
        ("delete", "kubeconfig Secret {ns}/dev-kubeconfig not found"),
        ("no-key", "Secret {ns}/dev-kubeconfig has no key value (keys: token)"),
        ("garbage", IN_SECRET + " is not valid YAML (line 2, column 12)"),
        ("not-kubeconfig", IN_SECRET + " is not a kubeconfig (no clusters, users, contexts)"),
    ],
)
async def test_broken_secret_makes_one_cluster_unavailable(
    management: BedCluster,
    management_api: client.ApiClient,
    fleet_ns: str,
    fleet: list[RancherCluster],
    store: KubeconfigStore,
    breakage: str,
    reason: str,
) -> None:
    clusters = await _rancher_clusters(management_api, fleet_ns)
    old_path = await store.path(clusters["dev"])
    secret = "dev-kubeconfig"
    if breakage == "delete":
        with rancher.api_client(management.kubeconfig) as api:
            client.CoreV1Api(api).delete_namespaced_secret(secret, fleet_ns)
    elif breakage == "no-key":
        await _patch_secret(management, fleet_ns, secret, {"value": None, "token": "eHl6"})
    elif breakage == "garbage":
        await _patch_secret(
            management, fleet_ns, secret, {"value": base64.b64encode(GARBAGE).decode()}
        )
    else:
        content = base64.b64encode(b"token: s3cr3t-t0ken-do-not-print\n").decode()
        await _patch_secret(management, fleet_ns, secret, {"value": content})

    clusters = await _rancher_clusters(management_api, fleet_ns)  # the Secret's new version
    with pytest.raises(ClusterUnavailable) as raised:
        await store.path(clusters["dev"])

    assert raised.value.cluster_id == "c-m-dev00001"
    assert raised.value.reason == reason.format(ns=fleet_ns)
    assert "s3cr3t" not in str(raised.value)
    assert not old_path.exists()  # the stale kubeconfig is not served any more
    assert _server_of(await store.path(clusters["prod-gpu"]))  # the others proceed


def _create_secret(
    management: BedCluster,
    namespace: str,
    name: str,
    key: str,
    kubeconfig: Path,
    labels: dict[str, str],
    cluster_id: str = "",
) -> None:
    annotations = {"herd.suse.com/cluster-id": cluster_id} if cluster_id else {}
    body = client.V1Secret(
        metadata=client.V1ObjectMeta(name=name, labels=labels, annotations=annotations),
        data={key: base64.b64encode(kubeconfig.read_bytes()).decode()},
    )
    with rancher.api_client(management.kubeconfig) as api:
        client.CoreV1Api(api).create_namespaced_secret(namespace, body)


async def test_secret_source_and_inventory(
    management: BedCluster,
    management_api: client.ApiClient,
    downstream: list[BedCluster],
    fleet_ns: str,
    secrets_ns: str,
    fleet: list[RancherCluster],
    store: KubeconfigStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    herd = {"herd.suse.com/cluster": "true", "herd.suse.com/other": "x"}
    edge_1, edge_2, prod = (bed.kubeconfig for bed in (downstream[1], downstream[2], downstream[0]))
    _create_secret(management, secrets_ns, "edge-1", "kubeconfig", edge_1, {**herd, "env": "e"})
    _create_secret(management, secrets_ns, "edge-2", "value", edge_2, herd, "c-edge-2")
    _create_secret(management, secrets_ns, "dup", "kubeconfig", prod, herd, "c-m-prod0001")
    _create_secret(management, secrets_ns, "plain", "kubeconfig", prod, {})

    listed = await SecretSource(management_api, secrets_ns).list_clusters()
    assert sorted((c.id, c.name, dict(c.labels), c.ready, c.source) for c in listed) == [
        ("c-edge-2", "edge-2", {}, True, "secret"),
        ("c-m-prod0001", "dup", {}, True, "secret"),
        ("edge-1", "edge-1", {"env": "e"}, True, "secret"),
    ]

    inventory = Inventory(
        [RancherSource(management_api, [fleet_ns]), SecretSource(management_api, secrets_ns)], store
    )
    clusters = {c.id: c for c in await inventory.clusters()}

    assert list(clusters) == sorted(clusters)
    assert clusters["c-m-prod0001"].source == "rancher"  # first source wins
    assert "Cluster id c-m-prod0001 is listed twice" in caplog.text
    assert _server_of(await inventory.kubeconfig(clusters["edge-1"])) == downstream[1].server
    assert _server_of(await inventory.kubeconfig(clusters["c-edge-2"])) == downstream[2].server


async def test_listing_failures_are_transient(
    management_api: client.ApiClient, downstream: list[BedCluster]
) -> None:
    served = r"HTTP 404 .*is the resource type served here"
    with (
        rancher.api_client(downstream[0].kubeconfig) as plain,  # no Rancher CRD there
        pytest.raises(TransientError, match=served),
    ):
        await RancherSource(plain, ["fleet-default"]).list_clusters()


async def test_no_kubeconfig_bytes_in_logs_or_errors(
    management: BedCluster,
    management_api: client.ApiClient,
    downstream: list[BedCluster],
    fleet_ns: str,
    fleet: list[RancherCluster],
    store: KubeconfigStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # everything, the kubernetes client and urllib3 included
    texts: list[str] = []
    inventory = Inventory([RancherSource(management_api, [fleet_ns])], store)
    clusters = {c.name: c for c in await inventory.clusters()}
    texts += [repr(c) for c in clusters.values()]
    for cluster in clusters.values():
        await inventory.kubeconfig(cluster)
    rancher.rotate_kubeconfig(management.kubeconfig, "dev", downstream[0].kubeconfig, fleet_ns)
    clusters = {c.name: c for c in await inventory.clusters()}  # the rotated version
    await inventory.kubeconfig(clusters["dev"])
    half = base64.b64encode(downstream[1].kubeconfig.read_bytes()[:-200]).decode()
    await _patch_secret(management, fleet_ns, "dev-kubeconfig", {"value": half})
    clusters = {c.name: c for c in await inventory.clusters()}
    with pytest.raises(ClusterUnavailable) as raised:
        await inventory.kubeconfig(clusters["dev"])
    texts += [str(raised.value), repr(raised.value)]

    logged = caplog.text + "\n".join(texts)
    assert "Kubeconfig of cluster" in logged  # the rotation was logged: logs were captured
    for piece in _secret_material(*(bed.kubeconfig for bed in downstream)):
        assert piece not in logged
