"""Health gates, decided: a stage's merged checks, metric queries filled in, evaluations
judged and counted, the security gate's verdict. Pure.

- `merge_checks`: `rollout.stages[].checks` over `rollout.checks`. A field the stage sets
  replaces the Stack-wide one (`readiness`, `security`); `metrics` are merged by name (a
  stage's metric replaces the Stack-wide one of the same name, the others are added).
- `render_query`: a metric query with its `{{ .Cluster.* }}` / `{{ .Release.* }}` fields
  filled in as escaped PromQL string content; nothing else of the text is interpreted.
- `metric_failure`: why one evaluation failed its threshold (None: passed).
- `Tally`: failed evaluations per (cluster, check) over a soak; a cluster fails when a
  check reaches its `failureLimit`.
- `security_gate`: Hold (an image failed its scan at or above `failOn`, or is not scanned
  yet), Fail (still unscanned past `pendingTimeout`) or Pass.

Callers: `herd.plan.stages` (stages carry their checks), `herd.rollout.checks` (the soak).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from herd.api.checks import Checks, MetricCheck, SecurityCheck, Threshold, query_fields
from herd.api.common import duration_seconds

READINESS = "readiness"
SECURITY = "security"
REASON_LIMIT = 300
READINESS_TICK = 5.0  # seconds between readiness and security evaluations in a soak


@dataclass(frozen=True)
class Unready:
    """An object of a release that is not Current: why, and whether kstatus says Failed
    (not merely InProgress)."""

    why: str
    failed: bool = False


@dataclass(frozen=True)
class StageChecks:
    """What a stage's clusters must pass, merged and with defaults applied."""

    readiness: bool = True
    metrics: tuple[MetricCheck, ...] = ()
    security: SecurityCheck | None = None

    @property
    def tick_seconds(self) -> float:
        """How often the soak evaluates: every READINESS_TICK seconds (readiness and the
        security gate), sooner for a metric whose interval is shorter."""
        intervals = [duration_seconds(m.interval) for m in self.metrics]
        return min([READINESS_TICK, *intervals])

    @property
    def reads_manifests(self) -> bool:
        """Readiness and security list a release's objects or images from its stored
        manifest (parsed in the worker pool); metrics alone do not."""
        return self.readiness or self.security is not None

    def limit(self, check: str) -> int:
        """Failed evaluations that fail a cluster: a metric's failureLimit; readiness and
        security fail at the first."""
        return next((m.failure_limit for m in self.metrics if m.name == check), 1)


def merge_checks(stack: Checks | None, stage: Checks | None) -> StageChecks | None:
    """The checks of one stage (see the module docstring); None when neither sets any."""
    if stack is None and stage is None:
        return None
    readiness: bool | None = None
    security: SecurityCheck | None = None
    metrics: dict[str, MetricCheck] = {}
    for layer in (stack, stage):
        if layer is None:
            continue
        if "readiness" in layer.model_fields_set:
            readiness = layer.readiness
        if "security" in layer.model_fields_set:
            security = layer.security
        metrics |= {m.name: m for m in layer.metrics}
    return StageChecks(
        readiness=True if readiness is None else readiness,
        metrics=tuple(metrics.values()),
        security=security,
    )


def uses_release(query: str) -> bool:
    """Whether a query names a `{{ .Release.* }}` field (then it runs per release)."""
    return any(obj == "Release" for _, obj, _ in query_fields(query))


def _escaped(value: str) -> str:
    """`value` safe inside a PromQL string literal of either quote, or a bare label value."""
    out = value.replace("\\", "\\\\").replace('"', '\\"').replace("'", "\\'").replace("`", "")
    return out.replace("\n", " ").replace("\r", " ")


def render_query(
    query: str, cluster: Mapping[str, str], release: Mapping[str, str] | None = None
) -> str:
    """The query with its fields filled in from `cluster` (Id, Name) and `release` (Name,
    Namespace, Chart); a Release field without a release is left empty."""
    objects = {"Cluster": cluster, "Release": release or {}}
    for text, obj, name in query_fields(query):
        query = query.replace(text, _escaped(objects[obj].get(name, "")))
    return query


def metric_failure(value: float | None, threshold: Threshold) -> str | None:
    """Why a metric evaluation failed (no value, above max, below min); None: passed."""
    if value is None:
        return "the query returned no value"
    if math.isnan(value):  # e.g. a rate over no requests: not a pass
        return "the query returned NaN"
    if threshold.max is not None and value > threshold.max:
        return f"{value:.4g} is above max {threshold.max:g}"
    if threshold.min is not None and value < threshold.min:
        return f"{value:.4g} is below min {threshold.min:g}"
    return None


@dataclass
class Tally:
    """Failed evaluations per (cluster, check) during one soak; the first reason that
    reached its limit per cluster (`failed`)."""

    counts: dict[tuple[str, str], int] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    def record(self, cluster: str, check: str, failure: str | None, limit: int) -> str | None:
        """Count one evaluation; the cluster's failure message once `limit` is reached."""
        if failure is None or cluster in self.failed:
            return self.failed.get(cluster)
        key = (cluster, check)
        self.counts[key] = self.counts.get(key, 0) + 1
        if self.counts[key] < limit:
            return None
        times = f" ({self.counts[key]} failed evaluations)" if limit > 1 else ""
        self.failed[cluster] = clip(f"check {check}: {failure}{times}")
        return self.failed[cluster]


class Gate(enum.StrEnum):
    PASS = "Pass"
    HOLD = "Hold"
    FAIL = "Fail"


@dataclass(frozen=True)
class GateVerdict:
    gate: Gate
    reason: str = ""


def security_gate(
    failed: list[str], pending: list[str], pending_seconds: float, check: SecurityCheck
) -> GateVerdict:
    """A cluster's security gate from its releases' images: `failed` (a vulnerability at or
    above failOn), `pending` (not scanned, or no report) for `pending_seconds` since the
    release was deployed."""
    if failed:
        level = check.fail_on.value.lower()
        return GateVerdict(Gate.HOLD, clip(f"image {failed[0]} has {level} vulnerabilities"))
    if pending:
        timeout = duration_seconds(check.pending_timeout)
        if pending_seconds > timeout:
            why = f"image {pending[0]} still not scanned after {check.pending_timeout}"
            return GateVerdict(Gate.FAIL, clip(why))
        return GateVerdict(Gate.HOLD, clip(f"waiting for NeuVector to scan {pending[0]}"))
    return GateVerdict(Gate.PASS)


def clip(text: str, limit: int = REASON_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
