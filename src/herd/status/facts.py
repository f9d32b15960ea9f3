"""What the add-on probe observed after a pass: the status pipeline's input facts. Pure data.

`herd.addons.probe` (with `herd.addons.gpu.probe` and `herd.addons.neuvector`) produces
them, one `Observation` per pass, from each target cluster: NeuVector scans
(`ClusterScan`), the observability agent's health (`AgentHealth`), the nodes' GPUs
(`ClusterGpus`) and each release's GPU requests and utilization (`ReleaseGpus`). They are
defined here, below the add-ons, so that the status (`herd.status.pipeline`,
`herd.status.addons`, `herd.status.security`, `herd.status.observability`,
`herd.status.gpu`) is built from them without importing any I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

NEUVECTOR: Final = "neuvector"
"""The NeuVector add-on's chart name in a Stack (user charts cannot use it)."""
AGENT: Final = "suse-observability-agent"
"""The SUSE Observability agent add-on's chart name in a Stack."""

GPU_RESOURCE = "nvidia.com/gpu"
ReleaseRef = tuple[str, str]  # (namespace, release name) within one cluster
RowKey = tuple[str, str, str]  # cluster, namespace, release


class FailOn(enum.StrEnum):
    """The least severe vulnerability that fails a release's scan."""

    CRITICAL = "critical"
    HIGH = "high"


class ScanState(enum.StrEnum):
    PENDING = "Pending"
    SCANNING = "Scanning"
    COMPLETED = "Completed"
    UNAVAILABLE = "Unavailable"


@dataclass(frozen=True)
class ImageScan:
    """One image's finished scan: vulnerability counts by severity."""

    critical: int = 0
    high: int = 0
    medium: int = 0

    @property
    def total(self) -> int:
        return self.critical + self.high + self.medium

    def fails(self, fail_on: FailOn) -> bool:
        return self.critical > 0 or (fail_on is FailOn.HIGH and self.high > 0)


@dataclass(frozen=True)
class ScanReport:
    """What one cluster's NeuVector says: finished scans by normalized image, and how
    many scans are scheduled or running."""

    images: Mapping[str, ImageScan] = field(default_factory=dict)
    in_progress: int = 0


@dataclass(frozen=True)
class ClusterScan:
    """A cluster's scan input. `report` None means NeuVector was not (or could not be)
    asked; `state` then says why (Pending: not deployed yet; Unavailable: `problem`)."""

    cluster: str
    releases: Mapping[ReleaseRef, frozenset[str]] = field(default_factory=dict)
    report: ScanReport | None = None
    state: ScanState | None = None  # forced state when there is no report
    problem: str = ""


@dataclass(frozen=True)
class ImageVerdicts:
    """What a stage's security check read on one cluster (`herd.addons.probe`): the
    images failed at or above the check's level, those not scanned yet, and the
    cluster's scan they come from (`status.security` follows it during a soak)."""

    failed: list[str]
    pending: list[str]
    scan: ClusterScan | None = None


@dataclass(frozen=True)
class AgentHealth:
    """The agent's workloads in one cluster: `ready`, or what is not (`detail`)."""

    cluster: str
    ready: bool
    detail: str = ""


@dataclass(frozen=True)
class ClusterGpus:
    """`nvidia.com/gpu` over a cluster's nodes, or why they could not be read."""

    capacity: int | None = None
    allocatable: int | None = None
    problem: str = ""
    largest: int | None = None  # the most any one node has allocatable


@dataclass(frozen=True)
class ReleaseGpus:
    """A release's GPU requests and, when it requests some, its utilization or why not."""

    requests: int
    utilization: float | None = None
    reason: str = ""
    per_pod: int = 0  # the most one pod needs


@dataclass(frozen=True)
class Observation:
    """What the probe saw after one pass, by cluster id."""

    scans: dict[str, ClusterScan] = field(default_factory=dict)
    agents: dict[str, AgentHealth] = field(default_factory=dict)
    fail_on: FailOn = FailOn.CRITICAL
    gpus: dict[str, ClusterGpus] = field(default_factory=dict)
    release_gpus: dict[RowKey, ReleaseGpus] = field(default_factory=dict)
    insights: dict[str, tuple[int, int]] = field(default_factory=dict)  # dashboards, alerts
