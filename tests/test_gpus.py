"""GPU facts as tables: requests in manifests, node sums, the fit warning, DCGM text."""

from __future__ import annotations

import logging
import math
from typing import Any

import pytest
import yaml

from herd.addons.gpu.dcgm import (
    GPU_UTIL,
    MetricsError,
    parse_metrics,
    release_gpus,
    release_utilization,
)
from herd.addons.gpu.demand import GpuDemand, gpu_demand, largest_node, node_gpus
from herd.addons.images import manifest_facts
from herd.api.status import DeploymentRow, StackStatus
from herd.operator.events import log_release
from herd.plan.releases import ReleaseKey
from herd.plan.results import ReleaseResult, State
from herd.status.facts import ClusterGpus, ReleaseGpus
from herd.status.gpu import UNAVAILABLE, fit_warning, with_gpus


def pod(*containers: dict[str, Any], init: tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": list(containers)}
    if init:
        spec["initContainers"] = list(init)
    return spec


def gpu(requests: Any = None, limits: Any = None) -> dict[str, Any]:
    resources: dict[str, Any] = {}
    if requests is not None:
        resources["requests"] = {"nvidia.com/gpu": requests, "cpu": "1"}
    if limits is not None:
        resources["limits"] = {"nvidia.com/gpu": limits}
    return {"name": "c", "image": "x", "resources": resources}


def workload(kind: str, name: str, spec: dict[str, Any], **extra: Any) -> dict[str, Any]:
    if kind == "Pod":
        return {"kind": kind, "metadata": {"name": name}, "spec": spec}
    body: dict[str, Any] = {"template": {"spec": spec}, **extra}
    if kind == "CronJob":
        body = {"schedule": "* * * * *", "jobTemplate": {"spec": body}}
    return {"kind": kind, "metadata": {"name": name}, "spec": body}


@pytest.mark.parametrize(
    ("docs", "total"),
    [
        ([workload("Deployment", "a", pod(gpu(1)), replicas=3)], 3),
        ([workload("Deployment", "a", pod(gpu(1)))], 1),  # replicas default 1
        ([workload("Deployment", "a", pod(gpu(1)), replicas=0)], 0),
        ([workload("StatefulSet", "a", pod(gpu("2")), replicas=2)], 4),
        ([workload("DaemonSet", "a", pod(gpu(1)))], 1),  # one pod per DaemonSet
        ([workload("Job", "a", pod(gpu(1)), parallelism=4)], 4),
        ([workload("CronJob", "a", pod(gpu(2)))], 2),
        ([workload("Pod", "a", pod(gpu(1), gpu(1)))], 2),  # containers add up
        ([workload("Pod", "a", pod(gpu(limits=2)))], 2),  # limit only: the request
        ([workload("Pod", "a", pod(gpu(requests=1, limits=2)))], 1),  # request wins
        ([workload("Pod", "a", pod(gpu(1), init=(gpu(3),)))], 3),  # init container max
        ([workload("Pod", "a", pod(gpu(2), init=(gpu(1),)))], 2),
        ([workload("Pod", "a", pod({"name": "c", "image": "x"}))], 0),
        ([workload("Pod", "a", pod(gpu("1.5")))], 0),  # not a whole number: not a GPU
        ([workload("Service", "a", pod(gpu(1)))], 0),
        (
            [
                workload("Deployment", "a", pod(gpu(1)), replicas=2),
                workload("Deployment", "b", pod({"name": "c", "image": "x"}), replicas=9),
            ],
            2,
        ),
    ],
)
def test_gpu_demand(docs: list[dict[str, Any]], total: int) -> None:
    assert gpu_demand(docs, "ai").total == total


@pytest.mark.parametrize(
    ("kind", "name", "pods", "others"),
    [
        ("Deployment", "ollama", ["ollama-7d9f8b6c4-x2k9p", "ollama-5b4c-abcde"], ["ollama-db-0"]),
        ("StatefulSet", "qdrant", ["qdrant-0", "qdrant-12"], ["qdrant-x", "qdrant-0-1"]),
        ("DaemonSet", "agent", ["agent-x2k9p"], ["agent-x2k9p-1", "agent-db-x2k9p"]),
        ("Job", "train", ["train-abcde"], ["trainer-abcde"]),
        ("CronJob", "nightly", ["nightly-29012345-abcde"], ["nightly-abcde"]),
        ("Pod", "solo", ["solo"], ["solo-1"]),
    ],
)
def test_pod_names_of_a_gpu_workload(
    kind: str, name: str, pods: list[str], others: list[str]
) -> None:
    demand = gpu_demand([workload(kind, name, pod(gpu(1)))], "ai")
    assert all(demand.owns(p) for p in pods)
    assert not any(demand.owns(p) for p in others)


def test_manifest_facts_count_gpus_from_helm_output() -> None:
    manifest = """---
# Source: ollama/templates/deployment.yaml
apiVersion: apps/v1
kind: Deployment
metadata:
  name: ollama
spec:
  replicas: 2
  template:
    spec:
      containers:
        - name: ollama
          image: ollama/ollama:0.5.7
          resources:
            limits:
              nvidia.com/gpu: 1
---
apiVersion: v1
kind: Service
metadata:
  name: ollama
"""
    facts = manifest_facts(manifest, "ai")
    assert facts.gpus.total == 2
    assert facts.images == frozenset({"docker.io/ollama/ollama:0.5.7"})
    assert manifest_facts("::: not yaml", "ai").gpus == GpuDemand()


def test_node_gpus_sums_capacity_and_allocatable() -> None:
    nodes = [
        {"status": {"capacity": {"nvidia.com/gpu": "8"}, "allocatable": {"nvidia.com/gpu": "7"}}},
        {"status": {"capacity": {"cpu": "32"}, "allocatable": {"cpu": "32"}}},
        {"status": {"capacity": {"nvidia.com/gpu": "4"}, "allocatable": {"nvidia.com/gpu": "4"}}},
        {},
    ]
    assert node_gpus(nodes) == (12, 11)
    assert node_gpus([]) == (0, 0)
    assert largest_node(nodes) == 7
    assert largest_node([]) == 0


def test_per_pod_demand_is_the_biggest_pod() -> None:
    docs = [
        workload("Deployment", "a", pod(gpu(1)), replicas=4),
        workload("StatefulSet", "b", pod(gpu(2), init=(gpu(3),)), replicas=1),
    ]
    demand = gpu_demand(docs, "ai")
    assert (demand.total, demand.per_pod) == (7, 3)


@pytest.mark.parametrize(
    ("per_pod", "largest", "warned"), [(2, 1, True), (2, 2, False), (2, None, False)]
)
def test_fit_warning_per_node(per_pod: int, largest: int | None, warned: bool) -> None:
    # 2 nodes with 1 GPU each: 2 in all, but a pod asking for 2 fits on neither.
    message = fit_warning(2, "c-m-gpu01", 2, per_pod=per_pod, largest=largest)
    assert bool(message) is warned
    if warned:
        assert message == (
            "GPU warning: a pod requests 2 nvidia.com/gpu but no node of cluster c-m-gpu01 "
            "has more than 1 allocatable; that pod stays Pending"
        )


@pytest.mark.parametrize(
    ("requested", "allocatable", "warned"),
    [(1, 0, True), (4, 2, True), (2, 2, False), (0, 0, False), (1, None, False)],
)
def test_fit_warning(requested: int, allocatable: int | None, warned: bool) -> None:
    message = fit_warning(requested, "c-m-cpu01", allocatable)
    assert bool(message) is warned
    if warned:
        assert "c-m-cpu01" in message and f"requests {requested} nvidia.com/gpu" in message


# -- DCGM text format ----------------------------------------------------------------------

# The shape dcgm-exporter 3.x serves with its default counters and Kubernetes mapping.
DCGM = r"""# HELP DCGM_FI_DEV_SM_CLOCK SM clock frequency (in MHz).
# TYPE DCGM_FI_DEV_SM_CLOCK gauge
DCGM_FI_DEV_SM_CLOCK{gpu="0",UUID="GPU-8f1f4d06-07fd-27a7-52d5-e58aa060d256",pci_bus_id="00000000:00:04.0",device="nvidia0",modelName="Tesla T4",Hostname="gpu-node-1",container="ollama",namespace="ai",pod="ollama-7d9f8b6c4-x2k9p"} 1590
# HELP DCGM_FI_DEV_GPU_UTIL GPU utilization (in %).
# TYPE DCGM_FI_DEV_GPU_UTIL gauge
DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-8f1f4d06-07fd-27a7-52d5-e58aa060d256",pci_bus_id="00000000:00:04.0",device="nvidia0",modelName="Tesla T4",Hostname="gpu-node-1",container="ollama",namespace="ai",pod="ollama-7d9f8b6c4-x2k9p"} 80
DCGM_FI_DEV_GPU_UTIL{gpu="1",UUID="GPU-3c2a",pci_bus_id="00000000:00:05.0",device="nvidia1",modelName="Tesla T4",Hostname="gpu-node-1",container="ollama",namespace="ai",pod="ollama-7d9f8b6c4-x2k9p"} 60
DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-77aa",pci_bus_id="00000000:00:04.0",device="nvidia0",modelName="Tesla T4",Hostname="gpu-node-2",container="ollama",namespace="ai",pod="ollama-7d9f8b6c4-q8w7e"} 50
DCGM_FI_DEV_GPU_UTIL{gpu="1",UUID="GPU-77ab",pci_bus_id="00000000:00:05.0",device="nvidia1",modelName="Tesla T4",Hostname="gpu-node-2",container="",namespace="",pod=""} 0
DCGM_FI_DEV_GPU_UTIL{gpu="2",UUID="GPU-77ac",device="nvidia2",modelName="Tesla T4",Hostname="gpu-node-2",container="x",namespace="other",pod="ollama-7d9f8b6c4-zzzzz"} 100
# HELP DCGM_FI_DEV_FB_USED Framebuffer memory used (in MiB).
# TYPE DCGM_FI_DEV_FB_USED gauge
DCGM_FI_DEV_FB_USED{gpu="0",UUID="GPU-8f1f4d06-07fd-27a7-52d5-e58aa060d256",modelName="Tesla \"T4\"\\x",namespace="ai",pod="ollama-7d9f8b6c4-x2k9p",} 11245 1700000000000
"""  # noqa: E501


def test_parse_metrics_reads_the_exporter_format() -> None:
    samples = parse_metrics(DCGM)
    assert len(samples) == 7
    util = [s for s in samples if s.name == GPU_UTIL]
    assert util[0].labels["UUID"] == "GPU-8f1f4d06-07fd-27a7-52d5-e58aa060d256"
    assert util[0].labels["pod"] == "ollama-7d9f8b6c4-x2k9p" and util[0].value == 80
    assert samples[-1].labels["modelName"] == 'Tesla "T4"\\x'  # escapes, trailing comma
    assert samples[-1].value == 11245  # timestamp ignored
    assert math.isnan(parse_metrics("up 1\nnan_metric NaN\n")[1].value)


@pytest.mark.parametrize("bad", ["DCGM{gpu=0} 1", 'DCGM{gpu="0" 1', "DCGM", "DCGM 1 2 3", "1x 2"])
def test_parse_metrics_rejects_malformed_lines(bad: str) -> None:
    with pytest.raises(MetricsError, match="line 2"):
        parse_metrics("ok 1\n" + bad)


def test_release_utilization_is_the_mean_over_its_pods() -> None:
    demand = gpu_demand([workload("Deployment", "ollama", pod(gpu(2)), replicas=2)], "ai")
    samples = parse_metrics(DCGM)
    # pod x2k9p: (80 + 60) / 2 = 70; pod q8w7e: 50; mean over the two pods = 60.
    assert release_utilization(samples, "ai", demand) == pytest.approx(60.0)
    assert release_utilization(samples, "elsewhere", demand) is None
    other = gpu_demand([workload("Deployment", "qdrant", pod(gpu(1)))], "ai")
    assert release_utilization(samples, "ai", other) is None


def test_release_gpus_reasons() -> None:
    demand = gpu_demand([workload("Deployment", "ollama", pod(gpu(1)))], "ai")
    assert release_gpus(GpuDemand(), "no exporter", "ai") == ReleaseGpus(0)
    assert release_gpus(demand, "no dcgm-exporter Service", "ai").reason == (
        "no dcgm-exporter Service"
    )
    assert release_gpus(demand, [], "ai").reason.startswith("dcgm-exporter reports no GPU")
    assert release_gpus(demand, parse_metrics(DCGM), "ai").utilization == pytest.approx(60.0)


# -- status ----------------------------------------------------------------------------------


def row(cluster: str, name: str, message: str = "", status: str = "Deployed") -> DeploymentRow:
    return DeploymentRow(
        chart_name=name,
        cluster_id=cluster,
        release_name=name,
        namespace="ai",
        status=status,
        message=message,
    )


def test_with_gpus_fills_rows_warns_and_lists_clusters() -> None:
    status = StackStatus(
        deployments=[
            row("gpu", "ollama"),
            row("cpu", "ollama", "context deadline exceeded", "Failed"),
            row("gpu", "web"),
            row("gpu", "unread"),
        ]
    )
    clusters = {
        "gpu": ClusterGpus(8, 8),
        "cpu": ClusterGpus(0, 0),
        "gone": ClusterGpus(problem="cannot list nodes: HTTP 403"),
    }
    releases = {
        ("gpu", "ai", "ollama"): ReleaseGpus(2, 74.6),
        ("cpu", "ai", "ollama"): ReleaseGpus(2, reason="no dcgm-exporter Service"),
        ("gpu", "ai", "web"): ReleaseGpus(0),
    }
    out = with_gpus(status, clusters, releases, max_rows=2)
    ollama, starved, web, unread = out.deployments
    assert (ollama.gpu_requests, ollama.gpu_utilization, ollama.message) == (2, "75%", "")
    assert starved.gpu_utilization == UNAVAILABLE
    assert starved.gpu_utilization_reason == "no dcgm-exporter Service"
    assert starved.message.startswith("GPU warning: requests 2 nvidia.com/gpu but cluster cpu")
    assert starved.message.endswith("; context deadline exceeded")
    assert (web.gpu_requests, web.gpu_utilization) == (0, None)
    assert unread.gpu_requests is None
    assert [r.cluster_id for r in out.cluster_resources] == ["cpu", "gone"]
    assert out.cluster_resource_count == 3
    assert out.cluster_resources[1].message == "cannot list nodes: HTTP 403"
    # Applied twice (a later pass on the same rows), the warning is not repeated.
    again = with_gpus(out, clusters, releases).deployments[1]
    assert again.message.count("GPU warning") == 1
    dumped = out.model_dump(by_alias=True, exclude_none=True)
    assert dumped["deployments"][0]["gpuUtilization"] == "75%"
    assert dumped["clusterResources"][0] == {
        "clusterId": "cpu",
        "gpuCapacity": 0,
        "gpuAllocatable": 0,
    }
    assert yaml.safe_dump(dumped)  # what kubectl get -o yaml shows


class Recorded:
    def __init__(self) -> None:
        self.posted: list[tuple[str, str, str]] = []

    def normal(self, reason: str, message: str) -> None:
        self.posted.append(("Normal", reason, message))

    def warning(self, reason: str, message: str) -> None:
        self.posted.append(("Warning", reason, message))


def test_a_fit_warning_is_a_warning_event_and_plain_deploying_is_not() -> None:
    key = ReleaseKey("c-m-cpu01", "ai", "ollama")
    events = Recorded()
    logger = logging.getLogger("test")
    log_release(ReleaseResult(key, "ollama", State.DEPLOYING, message="installing"), logger, events)
    assert events.posted == []
    warning = fit_warning(1, "c-m-cpu01", 0)
    log_release(ReleaseResult(key, "ollama", State.DEPLOYING, message=warning), logger, events)
    assert events.posted == [
        (
            "Warning",
            "GpuFit",
            f"chart ollama (release ai/ollama) on cluster c-m-cpu01: {warning}",
        )
    ]
