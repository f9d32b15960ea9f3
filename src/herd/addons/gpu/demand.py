"""GPUs a release asks for, GPUs a cluster has, and whether the first fits the second. Pure.

`gpu_demand(documents, namespace)` reads the rendered manifest's workloads (Deployments,
StatefulSets, DaemonSets, ReplicaSets, Jobs, CronJobs, bare Pods) and counts the
`nvidia.com/gpu` their containers request. For an extended resource Kubernetes takes the
limit as the request when only a limit is set, so a container counts its request, else
its limit. Init containers run before the app containers, so a pod needs the larger of
its biggest init container and the sum of its app containers (the scheduler's rule).

`GpuDemand.total` is what the release asks of the cluster at once: per pod × replicas
(`spec.replicas`, default 1) for Deployments, StatefulSets and ReplicaSets;
`spec.parallelism` (default 1) for Jobs and CronJobs (one run at a time); 1 for a Pod;
and **one pod per DaemonSet**: a DaemonSet's count depends on the nodes it lands on,
which the manifest does not say. `GpuDemand.pods` are the pod names' patterns of the
workloads that ask for GPUs, so dcgm-exporter's `pod` label can be matched to the
release (`herd.addons.gpu.dcgm`).

`node_gpus(nodes)` sums `nvidia.com/gpu` capacity and allocatable over Node objects
(`largest_node`: the most on one node); whether a release's GPUs fit is worded by
`herd.status.gpu.fit_warning`.

Callers: `herd.addons.images` (manifest facts), `herd.addons.probe`, `herd.addons.gpu.fit`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from herd.status.facts import GPU_RESOURCE

_REPLICATED = frozenset({"Deployment", "StatefulSet", "ReplicaSet"})
_BATCH = frozenset({"Job", "CronJob"})


@dataclass(frozen=True)
class GpuDemand:
    """GPUs a release asks of its cluster, and how to recognize its GPU pods by name."""

    total: int = 0
    pods: tuple[str, ...] = ()  # regular expressions, anchored, one per GPU workload
    per_pod: int = 0  # the most one of its pods needs (a pod runs on one node)

    def owns(self, pod: str) -> bool:
        return any(re.fullmatch(pattern, pod) for pattern in self.pods)


def gpu_demand(documents: Iterable[Mapping[str, Any]], namespace: str) -> GpuDemand:
    """The `nvidia.com/gpu` the workloads among `documents` request (see the module)."""
    total = biggest = 0
    pods: list[str] = []
    for doc in documents:
        kind = doc.get("kind")
        name = str((doc.get("metadata") or {}).get("name") or "")
        spec = _pod_spec(doc)
        if spec is None or not name:
            continue
        per_pod = pod_gpus(spec)
        if not per_pod:
            continue
        total += per_pod * _copies(str(kind), doc.get("spec") or {})
        biggest = max(biggest, per_pod)
        pods.append(_pod_pattern(str(kind), name))
    return GpuDemand(total, tuple(pods), biggest)


def pod_gpus(spec: Mapping[str, Any]) -> int:
    """`nvidia.com/gpu` one pod needs: max(biggest init container, sum of containers)."""
    app = sum(_container_gpus(c) for c in _list(spec.get("containers")))
    init = max((_container_gpus(c) for c in _list(spec.get("initContainers"))), default=0)
    return max(app, init)


def node_gpus(nodes: Iterable[Mapping[str, Any]]) -> tuple[int, int]:
    """(capacity, allocatable) of `nvidia.com/gpu`, summed over Node objects."""
    capacity = allocatable = 0
    for node in nodes:
        status = node.get("status") or {}
        capacity += _quantity((status.get("capacity") or {}).get(GPU_RESOURCE))
        allocatable += _quantity((status.get("allocatable") or {}).get(GPU_RESOURCE))
    return capacity, allocatable


def largest_node(nodes: Iterable[Mapping[str, Any]]) -> int:
    """The most `nvidia.com/gpu` one node has allocatable (0 without nodes)."""
    return max(
        (
            _quantity(((n.get("status") or {}).get("allocatable") or {}).get(GPU_RESOURCE))
            for n in nodes
        ),
        default=0,
    )


def _pod_spec(doc: Mapping[str, Any]) -> Mapping[str, Any] | None:
    kind, spec = doc.get("kind"), doc.get("spec") or {}
    if not isinstance(spec, dict):
        return None
    if kind == "Pod":
        return spec
    if kind == "CronJob":
        spec = ((spec.get("jobTemplate") or {}).get("spec")) or {}
    elif kind not in _REPLICATED | _BATCH | {"DaemonSet"}:
        return None
    template = (spec.get("template") or {}).get("spec")
    return template if isinstance(template, dict) else None


def _copies(kind: str, spec: Mapping[str, Any]) -> int:
    if kind in _REPLICATED:
        return _count(spec.get("replicas"), 1)
    if kind == "Job":
        return _count(spec.get("parallelism"), 1)
    if kind == "CronJob":
        job = ((spec.get("jobTemplate") or {}).get("spec")) or {}
        return _count(job.get("parallelism"), 1)
    return 1  # Pod, and one pod per DaemonSet (its node count is not in the manifest)


def _pod_pattern(kind: str, name: str) -> str:
    """How the controllers name the pods of a workload `name` (Kubernetes' own schemes)."""
    base = re.escape(name)
    suffix = {
        "Deployment": r"-[a-z0-9]{1,10}-[a-z0-9]{5}",  # <name>-<template hash>-<random>
        "StatefulSet": r"-\d+",
        "CronJob": r"-\d+-[a-z0-9]{5}",  # <name>-<scheduled minute>-<random>
        "Pod": "",
    }.get(kind, r"-[a-z0-9]{5}")  # DaemonSet, ReplicaSet, Job: <name>-<random>
    return base + suffix


def _container_gpus(container: Any) -> int:
    if not isinstance(container, dict):
        return 0
    resources = container.get("resources") or {}
    requests = resources.get("requests") or {}
    limits = resources.get("limits") or {}
    if isinstance(requests, dict) and GPU_RESOURCE in requests:
        return _quantity(requests[GPU_RESOURCE])
    return _quantity(limits.get(GPU_RESOURCE)) if isinstance(limits, dict) else 0


def _quantity(value: Any) -> int:
    """An extended resource's quantity: a whole number (`1`, `"2"`); anything else is 0."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return max(value, 0)
    if isinstance(value, str) and re.fullmatch(r"\d+", value.strip()):
        return int(value.strip())
    return 0


def _count(value: Any, default: int) -> int:
    if value is None:
        return default
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
