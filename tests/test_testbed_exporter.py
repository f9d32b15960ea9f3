"""The test bed's exporter (`e2e.testbed.exporter`): its exposition parses, its counters
grow at the rates set, its histogram puts requests in the latency's bucket, and its GPU
series are the DCGM stand-in's. Over loopback HTTP, as Prometheus scrapes it. And the
configuration the test bed's Prometheus runs with (`e2e.testbed.prometheus.config`)."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
import yaml

from e2e.testbed.exporter import ExporterClient, Workload, serve
from e2e.testbed.prometheus import config
from herd.addons.gpu.dcgm import GPU_UTIL, parse_metrics


@pytest.fixture
def exporter() -> Iterator[ExporterClient]:
    server = serve("127.0.0.1", 0)
    yield ExporterClient(f"http://127.0.0.1:{server.server_address[1]}")
    server.shutdown()
    server.server_close()


def scrape(exporter: ExporterClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"{exporter.url}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for s in parse_metrics(text)}


def test_counters_histogram_and_gpus(exporter: ExporterClient) -> None:
    exporter.set(rates={"200": 1000, "500": 100}, latency_seconds=0.3, gpu_utilization={"1": 75})
    time.sleep(0.5)
    first = scrape(exporter)
    time.sleep(0.5)
    second = scrape(exporter)
    ok = ("http_requests_total", (("code", "200"),))
    errors = ("http_requests_total", (("code", "500"),))
    assert 300 <= second[ok] - first[ok] <= 700  # about 1000/s over about 0.5 s
    assert second[errors] == pytest.approx(second[ok] / 10, rel=0.05)
    bucket = "http_request_duration_seconds_bucket"
    assert second[(bucket, (("le", "0.25"),))] == 0
    total = second[("http_request_duration_seconds_count", ())]
    assert second[(bucket, (("le", "0.5"),))] == total == second[(bucket, (("le", "+Inf"),))]
    assert total == pytest.approx(second[ok] + second[errors], abs=2)
    utilization = [v for (name, _), v in second.items() if name == GPU_UTIL]
    assert utilization == [75.0]
    assert exporter.state()["gpu_utilization"] == {"1": 75.0}


def test_a_later_latency_fills_its_own_bucket() -> None:
    workload = Workload()
    workload.set({"rates": {"200": 1000}, "latency_seconds": 0.003})
    time.sleep(0.2)
    workload.set({"latency_seconds": 3})
    time.sleep(0.2)
    text = workload.metrics()
    buckets = {
        s.labels["le"]: s.value
        for s in parse_metrics(text)
        if s.name == "http_request_duration_seconds_bucket"
    }
    assert 0 < buckets["0.005"] == buckets["2.5"] < buckets["5.0"]


def test_bad_values_are_refused(exporter: ExporterClient) -> None:
    with pytest.raises(urllib.error.HTTPError, match="400"):
        exporter.set(rates={"500": "lots"})


def test_prometheus_config_scrapes_the_exporter_and_extra_targets_each_second() -> None:
    document = yaml.safe_load(config("downstream-1", "127.0.0.1:9100", ["198.18.0.2:9400"]))
    assert document["global"]["scrape_interval"] == "1s"
    assert [job["job_name"] for job in document["scrape_configs"]] == ["workload", "extra"]
    extra = document["scrape_configs"][1]["static_configs"][0]
    assert extra == {"targets": ["198.18.0.2:9400"], "labels": {"cluster": "downstream-1"}}
    assert set(document) == {"global", "scrape_configs"}  # no remote read or write, no alerting
