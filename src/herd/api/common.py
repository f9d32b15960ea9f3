"""What every Stack model shares: the wire conventions and the patterns fields are checked
against (names, repository URLs, chart references and versions, Go durations).

Callers: the other modules of `herd.api`, and `herd.plan` (`duration_seconds`).
"""

from __future__ import annotations

import re

from pydantic import (
    BaseModel,
    ConfigDict,
)
from pydantic.alias_generators import to_camel

DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
REPO_URL = r"^(https?|oci)://[^\s]+$"
GO_DURATION = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"
# A chart name in a repository, or a path reference below it (e.g. `app`, `team/app`):
# segments start with a letter or digit, so nothing reaches helm as a flag or climbs up.
CHART_REF = r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*$"
# A chart version or version constraint; never a flag.
CHART_VERSION = r"^[^-\s].*$"
# Kubernetes object names (DNS-1123 subdomain) and ConfigMap/Secret keys.
DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DATA_KEY = r"^[-._a-zA-Z0-9]+$"
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ns|us|µs|ms|s|m|h)")
_DURATION_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def duration_seconds(duration: str) -> float:
    """Seconds in a Go duration such as `15m` or `1h30m` (already validated)."""
    return sum(
        float(number) * _DURATION_SECONDS[unit] for number, unit in _DURATION_PART.findall(duration)
    )


class SpecModel(BaseModel):
    """Camel-case on the wire, snake_case in Python; unknown spec fields are errors."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )
