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

`fit_warning` words the warning, for the rows here and for the rollout's own check
(`herd.addons.gpu.fit`). Callers: `herd.status.addons`, `herd.addons.gpu.fit`.
"""

from __future__ import annotations

from collections.abc import Mapping

from herd.api.status import ClusterResources, DeploymentRow, StackStatus
from herd.status.build import DEFAULT_MAX_ROWS, MESSAGE_LIMIT, clip
from herd.status.facts import GPU_RESOURCE, ClusterGpus, ReleaseGpus, RowKey

UNAVAILABLE = "Unavailable"
FIT_WARNING = "GPU warning"  # how a fit warning starts (rows, Events)
GPU_ROW_FIELDS = ("gpu_requests", "gpu_utilization", "gpu_utilization_reason")


def fit_warning(
    requested: int,
    cluster: str,
    allocatable: int | None,
    *,
    per_pod: int = 0,
    largest: int | None = None,
) -> str:
    """The row's warning when the GPUs cannot fit: fewer allocatable in the cluster than
    `requested`, or a pod needing `per_pod` on one node when no node has that many
    (`largest`); "" when they may fit, or when the cluster's GPUs are unknown."""
    if requested <= 0 or allocatable is None:
        return ""
    if allocatable < requested:
        have = "no" if allocatable == 0 else f"only {allocatable}"
        return (
            f"{FIT_WARNING}: requests {requested} {GPU_RESOURCE} but cluster {cluster} has "
            f"{have} allocatable; its GPU pods stay Pending"
        )
    if largest is not None and per_pod > largest:
        return (
            f"{FIT_WARNING}: a pod requests {per_pod} {GPU_RESOURCE} but no node of cluster "
            f"{cluster} has more than {largest} allocatable; that pod stays Pending"
        )
    return ""


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
