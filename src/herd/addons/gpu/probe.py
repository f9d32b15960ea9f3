"""A cluster's GPUs and its dcgm-exporter's samples, read at most once per refresh interval.

`GpuProbe` is what `herd.addons.probe` asks, per target cluster, with the cluster's own
kubeconfig:

- `nodes`: `nvidia.com/gpu` capacity and allocatable summed over the Nodes (one list);
- `exporter`: the samples of NVIDIA dcgm-exporter's `/metrics`, through the API server's
  service proxy (`herd.addons.neuvector.ServiceProxy`, as for NeuVector). The exporter is
  found by its Service's labels: gpu-operator's `app=nvidia-dcgm-exporter`, else the
  dcgm-exporter chart's `app.kubernetes.io/name=dcgm-exporter`; its port is the one named
  `gpu-metrics` or `metrics`, else 9400, else the first.

Both answers are kept per cluster for `refresh_seconds` (the operator passes its resync
interval), so passes that follow each other quickly (signals, retries) read neither again.
An answer that is a failure is a reason string fit for the status, never raised.
Everything here blocks: callers use a thread. Callers: `herd.addons.probe`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, TypeVar

from kubernetes import client

from herd.addons.gpu.dcgm import MetricsError, Sample, parse_metrics
from herd.addons.gpu.demand import largest_node, node_gpus
from herd.addons.neuvector import NeuVectorError, ServiceProxy
from herd.kube.client import API_ERRORS, api_error_summary
from herd.kube.shared import KubeconfigUnusable, kubeconfig_client
from herd.status.facts import ClusterGpus

EXPORTER_SELECTORS = ("app=nvidia-dcgm-exporter", "app.kubernetes.io/name=dcgm-exporter")
EXPORTER_PORT = 9400
_PORT_NAMES = ("gpu-metrics", "metrics")
_OK_MIN, _OK_MAX = 200, 299
_CACHE_LIMIT = 5000
T = TypeVar("T")


class GpuProbe:
    def __init__(self, *, refresh_seconds: float = 300.0, timeout: float = 10.0) -> None:
        self._refresh = refresh_seconds
        self._timeout = timeout
        self._nodes: dict[str, tuple[float, ClusterGpus]] = {}
        self._exporters: dict[str, tuple[float, list[Sample] | str]] = {}

    def nodes(self, cluster: str, kubeconfig: Path) -> ClusterGpus:
        kept = _fresh(self._nodes.get(cluster), self._refresh)
        if kept is not None:
            return kept
        try:
            with kubeconfig_client(kubeconfig) as api:
                items = _items(
                    client.CoreV1Api(api).list_node(
                        _preload_content=False, _request_timeout=self._timeout
                    )
                )
            capacity, allocatable = node_gpus(items)
            found = ClusterGpus(capacity, allocatable, largest=largest_node(items))
        except KubeconfigUnusable as error:
            found = ClusterGpus(problem=str(error))
        except API_ERRORS as error:
            found = ClusterGpus(problem=f"cannot list nodes: {api_error_summary(error)}")
        _keep(self._nodes, cluster, found)
        return found

    def exporter(self, cluster: str, kubeconfig: Path) -> list[Sample] | str:
        """dcgm-exporter's samples in `cluster`, or why there are none."""
        kept = _fresh(self._exporters.get(cluster), self._refresh)
        if kept is not None:
            return kept
        try:
            with kubeconfig_client(kubeconfig) as api:
                found: list[Sample] | str = self._scrape(api)
        except KubeconfigUnusable as error:
            found = str(error)
        _keep(self._exporters, cluster, found)
        return found

    def forget(self, keep: set[str]) -> None:
        """Drop what is kept about clusters not in `keep`."""
        for cache in (self._nodes, self._exporters):
            for cluster in [c for c in cache if c not in keep]:
                del cache[cluster]

    def _scrape(self, api: client.ApiClient) -> list[Sample] | str:
        core = client.CoreV1Api(api)
        try:
            service = None
            for selector in EXPORTER_SELECTORS:
                services = _items(
                    core.list_service_for_all_namespaces(
                        label_selector=selector,
                        _preload_content=False,
                        _request_timeout=self._timeout,
                    )
                )
                if services:
                    service = services[0]
                    break
        except API_ERRORS as error:
            return f"cannot list services: {api_error_summary(error)}"
        if service is None:
            return "no dcgm-exporter Service (label app=nvidia-dcgm-exporter) in the cluster"
        meta = service.get("metadata") or {}
        port = _port(service)
        proxy = ServiceProxy(api, meta.get("namespace", ""), f"http:{meta.get('name')}:{port}")
        where = f"dcgm-exporter {meta.get('namespace')}/{meta.get('name')}:{port}"
        try:
            status, body = proxy("GET", "/metrics", None, {"Accept": "text/plain"})
        except NeuVectorError as error:  # the proxy's safe error text
            return f"{where}: {error}"
        if not _OK_MIN <= status <= _OK_MAX:
            return f"{where}: HTTP {status}"
        try:
            return parse_metrics(body.decode(errors="replace"))
        except MetricsError as error:
            return f"{where}: /metrics unreadable ({error})"


def _items(response: Any) -> list[dict[str, Any]]:
    items = json.loads(response.data).get("items") or []
    return [i for i in items if isinstance(i, dict)]


def _port(service: dict[str, Any]) -> int:
    ports = [p for p in (service.get("spec") or {}).get("ports") or [] if isinstance(p, dict)]
    for wanted in _PORT_NAMES:
        for port in ports:
            if port.get("name") == wanted and isinstance(port.get("port"), int):
                return int(port["port"])
    numbers = [int(p["port"]) for p in ports if isinstance(p.get("port"), int)]
    if EXPORTER_PORT in numbers or not numbers:
        return EXPORTER_PORT
    return numbers[0]


def _fresh(entry: tuple[float, T] | None, seconds: float) -> T | None:
    if entry is None or time.monotonic() - entry[0] >= seconds:
        return None
    return entry[1]


def _keep(cache: dict[str, tuple[float, T]], cluster: str, value: T) -> None:
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    cache[cluster] = (time.monotonic(), value)
