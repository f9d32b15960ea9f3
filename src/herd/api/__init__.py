"""Herd's API: the `Stack` models (data only) and their parsing. Imports no I/O library."""

from herd.api.charts import ChartSpec, ChartValues, ValuesSource
from herd.api.common import duration_seconds
from herd.api.parse import parse_spec, parse_stack
from herd.api.status import (
    Condition,
    DeploymentRow,
    ObservabilityStatus,
    SecurityStatus,
    SkippedCluster,
    StackStatus,
)
from herd.api.targets import LabelSelector, LabelSelectorRequirement, Targets
from herd.api.v1 import API_VERSION, KIND, PLURAL, VERSION, Stack, StackSpec, Toggle

__all__ = [
    "API_VERSION",
    "KIND",
    "PLURAL",
    "VERSION",
    "ChartSpec",
    "ChartValues",
    "Condition",
    "DeploymentRow",
    "LabelSelector",
    "LabelSelectorRequirement",
    "ObservabilityStatus",
    "SecurityStatus",
    "SkippedCluster",
    "Stack",
    "StackSpec",
    "StackStatus",
    "Targets",
    "Toggle",
    "ValuesSource",
    "duration_seconds",
    "parse_spec",
    "parse_stack",
]
