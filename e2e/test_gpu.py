"""GPU facts on the test bed: real API servers, scheduler, kwok nodes, helm and charts.

Two downstream clusters: `c-m-gpu01` gets a kwok node with 4 `nvidia.com/gpu` (kwok
keeps the capacity the Node was made with), `c-m-cpu01` has only the CPU nodes. The
chart is the `ollama` 1.4.0 fixture with the real chart's GPU values. The real
kube-scheduler places its pods on the GPU node, or nowhere: on the CPU cluster they stay
Pending and `helm --wait` times out, which is what the fit warning foretells.

GPU utilization is read as the operator reads it: through the GPU cluster's API server
service proxy, from a dcgm-exporter stand-in (`e2e.testbed.dcgm_standin`) behind a
Service labelled as gpu-operator labels its exporter (`e2e.testbed.proxied`; the server
runs in a network namespace of the test's own).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from e2e.testbed import components, netns, proxied, rancher
from e2e.testbed.controlplane import Cluster as BedCluster
from e2e.testbed.dcgm_standin import CannedGpu, StandInProcess, served
from e2e.testbed.passes import status_of
from herd.addons.catalog import AddonCatalog
from herd.addons.probe import AddonProbe
from herd.api import StackStatus, parse_stack
from herd.api.v1 import Stack
from herd.engine.engine import Engine
from herd.engine.protocols import StackResult
from herd.helm.environment import HelmEnvironment
from herd.plan.clusters import Cluster, KubeconfigRef
from herd.plan.results import ReleaseResult, State

GPU_NODE = "kwok-gpu-1"
EXPORTER = "nvidia-dcgm-exporter"
EXPORTER_NAMESPACE = "gpu-operator"
EXPORTER_PORT = 9400


class Inventory:
    def __init__(self, beds: dict[str, BedCluster]) -> None:
        self.beds = beds
        self.by_id = {
            cid: Cluster(
                id=cid,
                name=cid,
                labels={"gpu-test": "yes"},
                ready=True,
                source="file",
                kubeconfig=KubeconfigRef.file(bed.kubeconfig),
            )
            for cid, bed in beds.items()
        }

    async def clusters(self) -> list[Cluster]:
        return list(self.by_id.values())

    async def kubeconfig(self, cluster: Cluster) -> Path:
        assert cluster.kubeconfig.path is not None
        return cluster.kubeconfig.path


def core(bed: BedCluster) -> contextlib.AbstractContextManager[client.ApiClient]:
    return rancher.api_client(bed.kubeconfig)


@pytest.fixture(scope="module")
def gpu_node(downstream: list[BedCluster]) -> Iterator[BedCluster]:
    """A kwok node with 4 GPUs on the first downstream cluster, Ready; removed after."""
    bed = downstream[0]
    node = components.fake_node(GPU_NODE, gpus=4)
    with core(bed) as api:
        nodes = client.CoreV1Api(api)
        with contextlib.suppress(ApiException):
            nodes.delete_node(GPU_NODE)
        nodes.create_node(node)
    yield bed
    with core(bed) as api, contextlib.suppress(ApiException):
        client.CoreV1Api(api).delete_node(GPU_NODE)


@pytest.fixture(scope="module")
def exporter(
    gpu_node: BedCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StandInProcess]:
    with contextlib.ExitStack() as stack:
        host = netns.host_or_skip(stack, "herd-dcgm", "the dcgm-exporter stand-in")
        standin = stack.enter_context(
            served(
                host.popen,
                host=host.address,
                port=EXPORTER_PORT,
                workdir=tmp_path_factory.mktemp("dcgm-standin"),
            )
        )
        with core(gpu_node) as api, contextlib.suppress(ApiException):
            client.CoreV1Api(api).create_namespace(
                client.V1Namespace(metadata=client.V1ObjectMeta(name=EXPORTER_NAMESPACE))
            )
        proxied.expose(
            gpu_node.kubeconfig,
            EXPORTER_NAMESPACE,
            EXPORTER,
            address=standin.host,
            port=standin.port,
            port_name="gpu-metrics",
            service_port=EXPORTER_PORT,
            labels={"app": EXPORTER},
        )
        stack.callback(proxied.remove, gpu_node.kubeconfig, EXPORTER_NAMESPACE, EXPORTER)
        yield standin


@pytest.fixture
async def env() -> AsyncIterator[HelmEnvironment]:
    helm = HelmEnvironment()
    yield helm
    helm.close()


def pods_of(bed: BedCluster, namespace: str, release: str) -> list[client.V1Pod]:
    with core(bed) as api:
        found = client.CoreV1Api(api).list_namespaced_pod(
            namespace, label_selector=f"app.kubernetes.io/instance={release}"
        )
    return list(found.items)


def gpu_stack(chart_repo_url: str, namespace: str) -> Stack:
    """ollama with 2 replicas of one GPU each, on the GPU cluster and the one without."""
    return parse_stack(
        {
            "apiVersion": "herd.suse.com/v1",
            "kind": "Stack",
            "metadata": {"name": "gpu-inference", "namespace": "default"},
            "spec": {
                "targets": {"clusterIds": ["c-m-gpu01", "c-m-cpu01"]},
                "charts": [
                    {
                        "name": "ollama",
                        "repo": chart_repo_url,
                        "version": "1.4.0",
                        "namespace": namespace,
                        "wait": True,
                        "timeout": "25s",
                        "values": {
                            "inline": {
                                "replicaCount": 2,
                                "ollama": {"gpu": {"enabled": True, "number": 1}},
                            }
                        },
                    }
                ],
            },
        }
    )


def assert_gpu_warning_only_where_no_gpus(result: StackResult, seen: list[ReleaseResult]) -> None:
    """Deployed where the GPUs are, failed elsewhere, warned while helm still waited."""
    final = {r.key.cluster: r for r in result.releases}
    assert final["c-m-gpu01"].state is State.DEPLOYED, final
    assert final["c-m-cpu01"].state is State.FAILED, final
    # The warning came while helm still waited, only for the cluster without GPUs.
    early = [r for r in seen if r.state is State.DEPLOYING and "GPU warning" in r.message]
    assert [r.key.cluster for r in early] == ["c-m-cpu01"], seen
    assert early[0].message == (
        "GPU warning: requests 2 nvidia.com/gpu but cluster c-m-cpu01 has no allocatable; "
        "its GPU pods stay Pending"
    )


def assert_gpu_rows_and_resources(status: StackStatus) -> None:
    """Requests and utilization per row (none without an exporter), capacity per cluster."""
    rows = {r.cluster_id: r for r in status.deployments}
    gpu, cpu = rows["c-m-gpu01"], rows["c-m-cpu01"]
    assert (gpu.gpu_requests, gpu.gpu_utilization, gpu.message) == (2, "75%", "")
    assert cpu.gpu_requests == 2
    assert cpu.gpu_utilization == "Unavailable"
    assert cpu.gpu_utilization_reason == (
        "no dcgm-exporter Service (label app=nvidia-dcgm-exporter) in the cluster"
    )
    assert cpu.message.startswith("GPU warning: requests 2 nvidia.com/gpu"), cpu.message
    resources = {
        r.cluster_id: (r.gpu_capacity, r.gpu_allocatable) for r in status.cluster_resources
    }
    assert resources == {"c-m-gpu01": (4, 4), "c-m-cpu01": (0, 0)}
    assert status.cluster_resource_count == 2


async def test_gpu_requests_fit_warning_and_utilization_through_the_proxy(
    downstream: list[BedCluster],
    gpu_node: BedCluster,
    exporter: StandInProcess,
    env: HelmEnvironment,
    chart_repo_url: str,
) -> None:
    inventory = Inventory({"c-m-gpu01": gpu_node, "c-m-cpu01": downstream[1]})
    engine = Engine(inventory, env)
    probe = AddonProbe(AddonCatalog(None), env, refresh_seconds=0.0)
    namespace = "gpu-" + uuid.uuid4().hex[:6]
    stack = gpu_stack(chart_repo_url, namespace)
    seen: list[ReleaseResult] = []
    try:
        result = await engine.apply(stack, seen.append)
        assert_gpu_warning_only_where_no_gpus(result, seen)
        pods = [p.metadata.name for p in pods_of(gpu_node, namespace, "ollama")]
        assert len(pods) == 2
        assert all(p.spec.node_name == GPU_NODE for p in pods_of(gpu_node, namespace, "ollama"))
        held = {"namespace": namespace, "container": "ollama", "hostname": GPU_NODE}
        exporter.set_gpus(
            [
                CannedGpu(0, "GPU-5a1c-0000", utilization=90, fb_used=9120, pod=pods[0], **held),
                CannedGpu(1, "GPU-5a1c-0001", utilization=60, fb_used=7040, pod=pods[1], **held),
                CannedGpu(2, "GPU-5a1c-0002", utilization=100, hostname=GPU_NODE),
                CannedGpu(3, "GPU-5a1c-0003", hostname=GPU_NODE),
            ]
        )  # fmt: skip
        served = exporter.served
        status = await status_of(result, probe, inventory)
        assert exporter.served == served + 1  # one scrape for the cluster, through the proxy
        assert_gpu_rows_and_resources(status)
        print(status.model_dump_json(by_alias=True, exclude_none=True, indent=2))
    finally:
        gone = await engine.delete(stack.namespace, stack.name)
        assert {r.state for r in gone.releases} <= {State.UNINSTALLED}
