"""Health gates of a staged rollout: `Checks` (readiness, metric analysis, security) and a
chart's `ChartTest` (`helm test` after install or upgrade).

`rollout.checks` applies to every stage, `rollout.stages[].checks` to one; the two are
merged by `herd.plan.checks.merge_checks` (a stage's field, when set, replaces the
Stack-wide one; metrics are merged by name). A metric query may use `{{ .Cluster.Id }}`,
`{{ .Cluster.Name }}`, `{{ .Release.Name }}`, `{{ .Release.Namespace }}` and
`{{ .Release.Chart }}`, nothing else (`query_fields` refuses the rest).

Callers: `herd.api.rollout` (`RolloutSpec.checks`, `RolloutStage.checks`),
`herd.api.charts` (`ChartSpec.test`), `herd.plan.checks`.
"""

from __future__ import annotations

import enum
import re

from pydantic import Field, field_validator, model_validator

from herd.api.common import DNS1123_LABEL, GO_DURATION, SpecModel, duration_seconds

MAX_METRICS = 10
QUERY_MAX = 2000
TEMPLATE_FIELDS = {
    "Cluster": ("Id", "Name"),
    "Release": ("Name", "Namespace", "Chart"),
}
MIN_INTERVAL_SECONDS = 1.0
_PLACEHOLDER = re.compile(r"\{\{([^{}]{0,100})\}\}")
_FIELD = re.compile(r"^\s*\.([A-Za-z]{1,20})\.([A-Za-z]{1,20})\s*$")


def query_fields(query: str) -> list[tuple[str, str, str]]:
    """The placeholders of a metric query: (text, object, field) for each `{{ .X.Y }}`.
    Raises ValueError for anything else between braces (no template execution on a
    Stack's input: only these fields are substituted, as data)."""
    found: list[tuple[str, str, str]] = []
    for match in _PLACEHOLDER.finditer(query):
        field = _FIELD.match(match.group(1))
        allowed = TEMPLATE_FIELDS.get(field.group(1), ()) if field else ()
        if field is None or field.group(2) not in allowed:
            names = ", ".join(
                f"{{{{ .{o}.{f} }}}}" for o, fs in TEMPLATE_FIELDS.items() for f in fs
            )
            raise ValueError(f"{match.group(0)!r} is not a known field; use {names}")
        found.append((match.group(0), field.group(1), field.group(2)))
    rest = _PLACEHOLDER.sub("", query)
    if "{{" in rest or "}}" in rest:
        raise ValueError("has an unclosed or nested {{ }} placeholder")
    return found


class Threshold(SpecModel):
    max: float | None = Field(default=None, description="The check fails above this value.")
    min: float | None = Field(default=None, description="The check fails below this value.")

    @model_validator(mode="after")
    def _one_bound(self) -> Threshold:
        if self.max is None and self.min is None:
            raise ValueError("needs max or min (or both)")
        if self.max is not None and self.min is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self


class MetricCheck(SpecModel):
    name: str = Field(
        max_length=63,
        pattern=DNS1123_LABEL,
        description="The metric check's name (DNS-1123 label), unique among the checks.",
    )
    query: str = Field(
        min_length=1,
        max_length=QUERY_MAX,
        description=(
            "A PromQL query returning one number, evaluated against each cluster's "
            "Prometheus. {{ .Cluster.Id }}, {{ .Cluster.Name }}, {{ .Release.Name }}, "
            "{{ .Release.Namespace }} and {{ .Release.Chart }} may be used (a query naming "
            "a Release field is evaluated once per release of the stage's clusters)."
        ),
    )
    threshold: Threshold = Field(description="The bounds a passing evaluation stays within.")
    charts: list[str] = Field(
        default_factory=list,
        max_length=50,
        description=(
            "For a query naming a {{ .Release.* }} field: only the releases of these charts "
            "(names in spec.charts). Default: every chart of the Stack (not the add-ons)."
        ),
    )
    interval: str = Field(
        default="1m",
        pattern=GO_DURATION,
        description="How often the query is evaluated during the soak (Go duration).",
    )
    failure_limit: int = Field(
        default=1,
        ge=1,
        le=100,
        description="Failed evaluations on a cluster that fail it (no value counts as failed).",
    )

    @field_validator("query")
    @classmethod
    def _fields(cls, value: str) -> str:
        query_fields(value)
        return value

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: str) -> str:
        if duration_seconds(value) < MIN_INTERVAL_SECONDS:
            raise ValueError(f"must be at least 1s, got {value!r}")
        return value


class FailOnLevel(enum.StrEnum):
    HIGH = "High"
    CRITICAL = "Critical"


class SecurityCheck(SpecModel):
    fail_on: FailOnLevel = Field(
        default=FailOnLevel.CRITICAL,
        description=(
            "A stage cannot pass while an image of its releases has a vulnerability at or "
            "above this severity in NeuVector's scan (High or Critical)."
        ),
    )
    pending_timeout: str = Field(
        default="10m",
        pattern=GO_DURATION,
        description=(
            "How long an image may stay unscanned (Pending) after its release was "
            "deployed; past it the cluster fails."
        ),
    )


class Checks(SpecModel):
    readiness: bool | None = Field(
        default=None,
        description=(
            "Every object of every release of the stage is Current by kstatus rules "
            "(Deployments, StatefulSets, DaemonSets, Jobs, Pods, PVCs, Services, Ready "
            "conditions) for the whole soak. Default: true."
        ),
    )
    metrics: list[MetricCheck] = Field(
        default_factory=list,
        max_length=MAX_METRICS,
        description="PromQL checks evaluated on each cluster every interval during the soak.",
    )
    security: SecurityCheck | None = Field(
        default=None,
        description="NeuVector's scan verdicts as a gate (needs the NeuVector add-on).",
    )

    @field_validator("metrics")
    @classmethod
    def _unique(cls, metrics: list[MetricCheck]) -> list[MetricCheck]:
        names = [m.name for m in metrics]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"metric names must be unique; used twice: {', '.join(twice)}")
        return metrics


class ChartTest(SpecModel):
    enabled: bool = Field(
        default=False,
        description="Run the chart's test hooks (helm test) after each install or upgrade.",
    )
    timeout: str = Field(
        default="5m",
        pattern=GO_DURATION,
        description="Go duration bounding helm test; a failed or timed-out test fails the release.",
    )
