"""NVIDIA dcgm-exporter's `/metrics` → GPU utilization per release. Pure.

dcgm-exporter (the one gpu-operator runs as the `nvidia-dcgm-exporter` Service, port
9400) serves the Prometheus text format, one sample per GPU and counter of its default
counters (`etc/default-counters.csv`), e.g.

    # HELP DCGM_FI_DEV_GPU_UTIL GPU utilization (in %).
    # TYPE DCGM_FI_DEV_GPU_UTIL gauge
    DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-8f1f...",device="nvidia0",modelName="Tesla T4",
        Hostname="node-1",container="infer",namespace="ai",pod="ollama-0"} 75

With its Kubernetes mapping (gpu-operator's default) a GPU that a pod holds carries that
pod's `namespace`, `pod` and `container`; an idle GPU has them empty.

`parse_metrics` reads the text format (comments, labels with escapes, optional
timestamps); `release_utilization` is the mean `DCGM_FI_DEV_GPU_UTIL` over a release's
pods (each pod: the mean over its GPUs), the pods recognized by namespace and by the pod
name patterns of `herd.addons.gpu.demand.GpuDemand`; `release_gpus` makes a release's
`herd.status.facts.ReleaseGpus` of them. Callers: `herd.addons.gpu.probe`, `herd.addons.probe`.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from herd.addons.gpu.demand import GpuDemand
from herd.errors import TransientError
from herd.status.facts import ReleaseGpus

GPU_UTIL = "DCGM_FI_DEV_GPU_UTIL"
FB_USED = "DCGM_FI_DEV_FB_USED"
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(,|\})')
_ESCAPES = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


class MetricsError(TransientError, ValueError):
    """The text is not in the Prometheus exposition format (names the line number)."""


@dataclass(frozen=True)
class Sample:
    name: str
    labels: Mapping[str, str]
    value: float


def parse_metrics(text: str) -> list[Sample]:
    """Every sample of a Prometheus text exposition; `MetricsError` on a malformed line."""
    samples = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            samples.append(_sample(line))
        except (ValueError, IndexError):
            raise MetricsError(f"line {number} is not a metric sample") from None
    return samples


def release_utilization(
    samples: Iterable[Sample], namespace: str, demand: GpuDemand
) -> float | None:
    """Mean GPU utilization (%) over the release's pods; None when no GPU of the exporter
    is held by one of them."""
    per_pod: dict[str, list[float]] = defaultdict(list)
    for sample in samples:
        if sample.name != GPU_UTIL or sample.labels.get("namespace") != namespace:
            continue
        pod = sample.labels.get("pod", "")
        if pod and demand.owns(pod) and math.isfinite(sample.value):
            per_pod[pod].append(sample.value)
    if not per_pod:
        return None
    means = [sum(values) / len(values) for values in per_pod.values()]
    return sum(means) / len(means)


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


def _sample(line: str) -> Sample:
    match = _NAME.match(line)
    if match is None:
        raise ValueError(line)
    name, rest = match.group(), line[match.end() :]
    labels: dict[str, str] = {}
    if rest.startswith("{"):
        rest = rest[1:]
        if rest.lstrip().startswith("}"):
            rest = rest.lstrip()[1:]
        else:
            while True:
                label = _LABEL.match(rest)
                if label is None:
                    raise ValueError(line)
                labels[label.group(1)] = _unescape(label.group(2))
                rest = rest[label.end() :]
                if label.group(3) == "}":
                    break
                if rest.lstrip().startswith("}"):  # a trailing comma is allowed
                    rest = rest.lstrip()[1:]
                    break
    fields = rest.split()
    if not fields or len(fields) > 2:
        raise ValueError(line)
    return Sample(name, labels, float(fields[0]))  # float() reads NaN, +Inf, -Inf


def _unescape(value: str) -> str:
    return re.sub(r"\\[\\\"n]", lambda m: _ESCAPES[m.group()], value)
