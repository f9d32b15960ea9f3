"""Herd's Prometheus client on real Prometheus servers scraping the test bed's exporter.

Real: the Prometheus servers (one per downstream cluster, `prometheus_fleet`), their
one-second scrapes, PromQL, the API servers, their service proxy and the cluster Secret
Herd lists. A stand-in: the exporter's values, which each test sets and then reads back
through `herd.addons.prometheus`, by both ways Herd finds a cluster's Prometheus:

- the URL annotation `herd.suse.com/prometheus-url` on a kubeconfig Secret, listed by
  Herd's own `SecretSource` from the management cluster;
- a Service reached through the cluster's API server service proxy (the Prometheus then
  runs in a network namespace of the test's own: the proxy refuses loopback endpoints).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from e2e.testbed import netns, proxied, rancher
from e2e.testbed import prometheus as bed_prometheus
from e2e.testbed.controlplane import Cluster as BedCluster
from herd.addons.prometheus import (
    PrometheusClient,
    PrometheusService,
    PrometheusUnavailable,
    QueryError,
    QueryResult,
    locate,
)
from herd.clusters.sources import SecretSource
from herd.names import CLUSTER_SECRET_LABEL, PROMETHEUS_URL_ANNOTATION

ERROR_RATIO = (
    'sum(rate(http_requests_total{code=~"5.."}[10s])) / sum(rate(http_requests_total[10s]))'
)
P95 = "histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket[10s])))"
NAMESPACE = "monitoring"
UNUSED = PrometheusService("monitoring", "unused")  # a URL-annotated cluster never asks it


async def eventually_value(
    ask: Callable[[], Awaitable[QueryResult]], accept: Callable[[float], bool], timeout: float
) -> float:
    """Ask until the single value is accepted (scrapes land each second)."""
    deadline = time.monotonic() + timeout
    while True:
        value = (await ask()).single()
        if value is not None and accept(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"last value {value} after {timeout:.0f}s")
        await asyncio.sleep(0.5)


@pytest.fixture
def annotated_cluster(management: BedCluster, downstream: list[BedCluster]) -> Iterator[str]:
    """A kubeconfig Secret for downstream-1, in a namespace of its own, whose annotation
    names that cluster's Prometheus; yields the namespace."""
    namespace = "prom-" + uuid.uuid4().hex[:6]
    with rancher.api_client(management.kubeconfig) as api:
        core = client.CoreV1Api(api)
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
        try:
            yield namespace
        finally:
            core.delete_namespace(namespace)


async def test_url_annotation_reads_what_the_exporter_serves(
    management: BedCluster,
    downstream: list[BedCluster],
    prometheus_fleet: dict[str, bed_prometheus.Monitored],
    annotated_cluster: str,
) -> None:
    monitored = prometheus_fleet[downstream[0].name]
    monitored.exporter.set(
        rates={"200": 40, "500": 10}, latency_seconds=0.3, gpu_utilization={"0": 90, "1": 30}
    )
    with rancher.api_client(management.kubeconfig) as api:
        client.CoreV1Api(api).create_namespaced_secret(
            annotated_cluster,
            client.V1Secret(
                metadata=client.V1ObjectMeta(
                    name="downstream-1",
                    labels={CLUSTER_SECRET_LABEL: "true"},
                    annotations={PROMETHEUS_URL_ANNOTATION: monitored.url + "/"},
                ),
                string_data={"kubeconfig": downstream[0].kubeconfig.read_text()},
            ),
        )
        (cluster,) = await SecretSource(api, annotated_cluster).list_clusters()
    location = locate(cluster, UNUSED)
    assert location.describe() == f"Prometheus {monitored.url}"
    prom = PrometheusClient(timeout=5.0)

    def ask(promql: str) -> Callable[[], Awaitable[QueryResult]]:
        return lambda: prom.query_async(location, promql)

    ratio = await eventually_value(ask(ERROR_RATIO), lambda v: abs(v - 0.2) < 0.03, 40)
    p95 = await eventually_value(ask(P95), lambda v: v > 0.25, 20)
    assert 0.25 < p95 <= 0.5, p95  # 0.3 s requests: the (0.25, 0.5] bucket
    gpus = await prom.query_async(location, "DCGM_FI_DEV_GPU_UTIL")
    assert sorted(gpus.values()) == [30.0, 90.0]
    assert {s.labels["cluster"] for s in gpus.series} == {downstream[0].name}
    assert {s.labels["modelName"] for s in gpus.series} == {"Tesla T4"}
    print(f"error ratio {ratio:.3f}, p95 {p95:.3f}s")

    # A new value is read back after the next scrape: the errors stop.
    monitored.exporter.set(rates={"200": 40, "500": 0}, gpu_utilization={"0": 5})
    await eventually_value(ask("max(DCGM_FI_DEV_GPU_UTIL)"), lambda v: v == 5.0, 20)
    await eventually_value(ask(ERROR_RATIO), lambda v: v == 0.0, 30)

    with pytest.raises(QueryError, match="bad_data: invalid parameter"):
        await prom.query_async(location, "sum(rate(http_requests_total[10s])")
    with pytest.raises(QueryError, match="returns a matrix"):
        await prom.query_async(location, "http_requests_total[10s]")
    with pytest.raises(QueryError, match="expected one"):
        (await prom.query_async(location, "http_requests_total")).single()
    # The other clusters' Prometheus servers scrape exporters of their own.
    other = prometheus_fleet[downstream[1].name]
    assert bed_prometheus.query(other.url, "count(DCGM_FI_DEV_GPU_UTIL)") == []


@pytest.fixture(scope="module")
def proxied_prometheus(
    downstream: list[BedCluster], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[BedCluster, bed_prometheus.Monitored]]:
    """downstream-2's Prometheus as Service monitoring/prometheus:9090, in a namespace."""
    bed = downstream[1]
    with contextlib.ExitStack() as stack:
        host = netns.host_or_skip(stack, "herd-prom", "the proxied Prometheus")
        monitored = bed_prometheus.start_in_netns(
            host, bed.name, tmp_path_factory.mktemp("prometheus-netns")
        )
        stack.callback(monitored.stop)
        with rancher.api_client(bed.kubeconfig) as api, contextlib.suppress(ApiException):
            client.CoreV1Api(api).create_namespace(
                client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE))
            )
        bed_prometheus.expose(bed.kubeconfig, NAMESPACE, host)
        stack.callback(proxied.remove, bed.kubeconfig, NAMESPACE, bed_prometheus.SERVICE_NAME)
        yield bed, monitored


async def test_service_through_the_api_server_proxy(
    proxied_prometheus: tuple[BedCluster, bed_prometheus.Monitored],
) -> None:
    bed, monitored = proxied_prometheus
    monitored.exporter.set(rates={"200": 10, "503": 10}, gpu_utilization={"0": 64})
    service = PrometheusService.parse(f"{NAMESPACE}/{bed_prometheus.SERVICE_NAME}:9090")
    prom = PrometheusClient(timeout=5.0)
    kubeconfig: Path = bed.kubeconfig

    def ask(promql: str) -> Callable[[], Awaitable[QueryResult]]:
        return lambda: prom.query_async(service, promql, kubeconfig=kubeconfig)

    assert await eventually_value(ask("avg(DCGM_FI_DEV_GPU_UTIL)"), lambda v: v == 64, 30) == 64
    await eventually_value(ask(ERROR_RATIO), lambda v: abs(v - 0.5) < 0.05, 40)
    monitored.exporter.set(gpu_utilization={"0": 12})
    await eventually_value(ask("avg(DCGM_FI_DEV_GPU_UTIL)"), lambda v: v == 12, 20)
    result = await prom.query_async(service, "up", kubeconfig=kubeconfig)
    assert [(s.labels["job"], s.value) for s in result.series] == [("workload", 1.0)]

    # A Service that is not there: the API server's answer, not a hang.
    missing = PrometheusService(NAMESPACE, "absent", "9090")
    with pytest.raises(PrometheusUnavailable, match="absent:9090: HTTP 404"):
        await prom.query_async(missing, "up", kubeconfig=kubeconfig)
