"""The GPUs `targets.placement.pickN` ranks clusters by: read fresh, once per pass.

`read_supply(targets, own)` lists, with each cluster's own kubeconfig (never a tenant's:
these are cluster-wide reads, and nothing is written), the Nodes and the Pods of every
candidate cluster, in parallel, and answers a `herd.plan.placement.GpuSupply` per cluster:

- allocatable: `nvidia.com/gpu` allocatable summed over the Nodes;
- free: allocatable minus the `nvidia.com/gpu` requested by the pods bound to a node and
  not finished, except the Stack's own pods (those labelled `app.kubernetes.io/instance:
  <release>` in a namespace where the Stack has that release, Helm's convention), so a
  Stack holding GPUs does not count them against itself.

A cluster that cannot be read gets `problem` (fit for the status) instead of figures; the
decision then keeps it only if it was picked before. Not cached: placement must see a
node that filled up or joined at the next pass. Callers: `herd.engine.engine`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from kubernetes import client

from herd.addons.gpu.demand import node_gpus, pod_gpus
from herd.kube.client import API_ERRORS, api_error_summary
from herd.kube.shared import KubeconfigUnusable, kubeconfig_client
from herd.plan.placement import GpuSupply

INSTANCE_LABEL = "app.kubernetes.io/instance"  # Helm's convention for a release's objects
_DONE = ("Succeeded", "Failed")
_TIMEOUT = 20


async def read_supply(
    kubeconfigs: Mapping[str, Path], own: Mapping[str, Collection[tuple[str, str]]]
) -> dict[str, GpuSupply]:
    """Per cluster (id -> its own kubeconfig), its GPUs; `own`: cluster -> the Stack's
    (namespace, release)."""
    clusters = sorted(kubeconfigs)
    found = await asyncio.gather(
        *(
            asyncio.to_thread(cluster_supply, kubeconfigs[c], tuple(own.get(c, ())))
            for c in clusters
        )
    )
    return dict(zip(clusters, found, strict=True))


def cluster_supply(kubeconfig: Path, own: Collection[tuple[str, str]]) -> GpuSupply:
    """One cluster's GPUs (blocking); a failure is a `problem`, never raised."""
    try:
        with kubeconfig_client(kubeconfig) as api:
            core = client.CoreV1Api(api)
            nodes = _items(core.list_node(_preload_content=False, _request_timeout=_TIMEOUT))
            pods = _items(
                core.list_pod_for_all_namespaces(
                    field_selector="spec.nodeName!=",
                    _preload_content=False,
                    _request_timeout=_TIMEOUT,
                )
            )
    except KubeconfigUnusable as error:
        return GpuSupply(problem=str(error))
    except API_ERRORS as error:
        return GpuSupply(problem=f"cannot list nodes and pods: {api_error_summary(error)}")
    _, allocatable = node_gpus(nodes)
    used = sum(pod_gpus(pod.get("spec") or {}) for pod in pods if _counts(pod, own))
    return GpuSupply(allocatable=allocatable, free=max(allocatable - used, 0))


def _counts(pod: Mapping[str, Any], own: Collection[tuple[str, str]]) -> bool:
    """Whether a pod's GPUs are taken from the Stack: bound, running, not the Stack's."""
    if (pod.get("status") or {}).get("phase") in _DONE:
        return False
    meta = pod.get("metadata") or {}
    release = (meta.get("labels") or {}).get(INSTANCE_LABEL)
    return (meta.get("namespace"), release) not in own


def _items(response: Any) -> list[dict[str, Any]]:
    items = json.loads(response.data).get("items") or []
    return [i for i in items if isinstance(i, dict)]
