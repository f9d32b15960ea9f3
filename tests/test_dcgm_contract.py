"""Herd's DCGM parsing against the dcgm-exporter stand-in, over HTTP on loopback.

The stand-in (`e2e.testbed.dcgm_standin`) serves dcgm-exporter's default counters in its
text format; the e2e test reaches the same server through an API server's service proxy.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator

import pytest

from e2e.testbed.dcgm_standin import DEFAULT_COUNTERS, CannedGpu, DcgmStandIn
from herd.addons.gpu.dcgm import FB_USED, GPU_UTIL, parse_metrics, release_utilization
from herd.addons.gpu.demand import gpu_demand

POD = {"kind": "Deployment", "metadata": {"name": "ollama"}}
POD_A, POD_B = "ollama-6c8b9d7f5-x2k9p", "ollama-6c8b9d7f5-q8w7e"
SPEC = {"template": {"spec": {"containers": [{"resources": {"limits": {"nvidia.com/gpu": 1}}}]}}}


@pytest.fixture
def standin() -> Iterator[DcgmStandIn]:
    server = DcgmStandIn().start()
    yield server
    server.stop()


def scrape(server: DcgmStandIn) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as answer:
        assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text: str = answer.read().decode()
    return text


def test_default_counters_parse_with_their_labels(standin: DcgmStandIn) -> None:
    held = {"namespace": "ai", "container": "ollama"}
    standin.set_gpus(
        [
            CannedGpu(0, "GPU-0aa", utilization=90, fb_used=9000, pod=POD_A, **held),
            CannedGpu(1, "GPU-1bb", utilization=50, pod=POD_B, **held),
            CannedGpu(2, "GPU-2cc", utilization=100),  # no pod's: not the release's
        ]
    )
    samples = parse_metrics(scrape(standin))
    assert {s.name for s in samples} == {name for name, _, _ in DEFAULT_COUNTERS}
    util = [s for s in samples if s.name == GPU_UTIL]
    assert [s.labels["UUID"] for s in util] == ["GPU-0aa", "GPU-1bb", "GPU-2cc"]
    assert {"gpu", "UUID", "pod", "namespace", "container", "modelName", "Hostname"} <= set(
        util[0].labels
    )
    assert util[2].labels["pod"] == ""
    assert next(s.value for s in samples if s.name == FB_USED) == 9000
    spec = {
        "template": {"spec": {"containers": [{"resources": {"limits": {"nvidia.com/gpu": 1}}}]}}
    }
    demand = gpu_demand([{**POD, "spec": {**spec, "replicas": 2}}], "ai")
    assert release_utilization(samples, "ai", demand) == pytest.approx(70.0)
    assert standin.served == 1


def test_no_gpu_of_the_release(standin: DcgmStandIn) -> None:
    standin.set_gpus([CannedGpu(0, "GPU-0aa", utilization=40)])
    samples = parse_metrics(scrape(standin))
    spec = {
        "template": {"spec": {"containers": [{"resources": {"limits": {"nvidia.com/gpu": 1}}}]}}
    }
    assert release_utilization(samples, "ai", gpu_demand([{**POD, "spec": spec}], "ai")) is None
