"""GPU facts → the Stack's status: row fields, the fit warning, `clusterResources`. Pure.

From what `herd.addons.probe` saw after a pass:

- each row whose manifest was read gets `gpuRequests` (`herd.addons.gpu.demand`); a row that
  requests GPUs gets `gpuUtilization`: the mean utilization as a whole percent (`"75%"`),
  or `"Unavailable"` with `gpuUtilizationReason` (no dcgm-exporter, the proxy refused,
  no GPU of the release's pods in its samples);
- a row that requests more GPUs than its cluster has allocatable gets the fit warning
  first in its `message` (a warning: nothing is blocked);
- `status.clusterResources`: GPU capacity and allocatable per target cluster, sorted by
  cluster id, at most `max_rows` of them, `clusterResourceCount` counting all.

Callers: `herd.addons.enrich`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from herd.addons.gpu.dcgm import Sample, release_utilization
from herd.addons.gpu.demand import ClusterGpus, GpuDemand, fit_warning
from herd.api.status import ClusterResources, DeploymentRow, StackStatus
from herd.status.build import DEFAULT_MAX_ROWS, MESSAGE_LIMIT, clip

UNAVAILABLE = "Unavailable"
RowKey = tuple[str, str, str]  # cluster, namespace, release
GPU_ROW_FIELDS = ("gpu_requests", "gpu_utilization", "gpu_utilization_reason")


@dataclass(frozen=True)
class ReleaseGpus:
    """A release's GPU requests and, when it requests some, its utilization or why not."""

    requests: int
    utilization: float | None = None
    reason: str = ""
    per_pod: int = 0  # the most one pod needs


def release_gpus(demand: GpuDemand, samples: list[Sample] | str, namespace: str) -> ReleaseGpus:
    """A release's GPU facts from its demand and its cluster's exporter samples (or the
    reason there are none)."""
    if not demand.total:
        return ReleaseGpus(0)
    per_pod = demand.per_pod
    if isinstance(samples, str):
        return ReleaseGpus(demand.total, reason=samples, per_pod=per_pod)
    mean = release_utilization(samples, namespace, demand)
    if mean is None:
        reason = "dcgm-exporter reports no GPU held by its pods"
        return ReleaseGpus(demand.total, reason=reason, per_pod=per_pod)
    return ReleaseGpus(demand.total, mean, per_pod=per_pod)


def with_gpus(
    status: StackStatus,
    clusters: Mapping[str, ClusterGpus],
    releases: Mapping[RowKey, ReleaseGpus],
    *,
    max_rows: int = DEFAULT_MAX_ROWS,
) -> StackStatus:
    rows = [_row(row, clusters.get(row.cluster_id), releases) for row in status.deployments]
    resources = [
        ClusterResources(
            cluster_id=cluster,
            gpu_capacity=gpus.capacity,
            gpu_allocatable=gpus.allocatable,
            message=clip(gpus.problem, MESSAGE_LIMIT) or None,
        )
        for cluster, gpus in sorted(clusters.items())
    ]
    return status.model_copy(
        update={
            "deployments": rows,
            "cluster_resources": resources[:max_rows],
            "cluster_resource_count": len(resources),
        }
    )


def _row(
    row: DeploymentRow, cluster: ClusterGpus | None, releases: Mapping[RowKey, ReleaseGpus]
) -> DeploymentRow:
    found = releases.get((row.cluster_id, row.namespace, row.release_name))
    if found is None:
        return row
    update: dict[str, object] = {
        "gpu_requests": found.requests,
        "gpu_utilization": None,
        "gpu_utilization_reason": None,
    }
    if found.requests > 0:
        if found.utilization is None:
            update["gpu_utilization"] = UNAVAILABLE
            update["gpu_utilization_reason"] = clip(found.reason or "not read", MESSAGE_LIMIT)
        else:
            update["gpu_utilization"] = f"{round(found.utilization)}%"
    warning = fit_warning(
        found.requests,
        row.cluster_id,
        cluster.allocatable if cluster else None,
        per_pod=found.per_pod,
        largest=cluster.largest if cluster else None,
    )
    if warning and not row.message.startswith(warning):
        message = f"{warning}; {row.message}" if row.message else warning
        update["message"] = clip(message, MESSAGE_LIMIT)
    return row.model_copy(update=update)
