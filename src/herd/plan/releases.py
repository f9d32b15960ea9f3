"""A helm release as Herd names, labels and observes it: pure data, no I/O.

`ReleaseKey` (cluster, namespace, name) is a release's identity, `DesiredRelease` what a
Stack wants there, `ObservedRelease` what helm's storage says (labels and the time helm
last wrote it), and the `herd.suse.com/...` labels tie them together. Re-exported by
`herd.plan.desired`, where the decisions about them live; read by the rollout, helm, status and
the CLI.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from herd.api.charts import ChartSpec
from herd.names import (
    LABEL_CHART,
    LABEL_CONFIG,
    LABEL_MANAGER,
    LABEL_STACK,
    LABEL_VERSION,
    LABEL_WAVE,
)
from herd.plan.chart_sources import ChartSource

MANAGERS = {"operator": "the Herd operator", "cli": "herd apply (CLI)"}

# Add-on releases (NeuVector, the observability agent) serve every Stack on a cluster:
# they carry this owner instead of a Stack's, so two Stacks with `security: enabled`
# share one NeuVector, and removing a Stack never removes them.
SHARED_OWNER = "herd.shared-addons"

_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")

Values = dict[str, Any]


def owner_label(namespace: str, name: str) -> str:
    """The `herd.suse.com/stack` label value naming a Stack (a valid label value)."""
    value = f"{namespace}.{name}"
    if _LABEL_VALUE.match(value):
        return value
    return "h-" + hashlib.sha256(value.encode()).hexdigest()[:40]


def label_value(text: str) -> str:
    """`text` made a valid label value (SemVer build metadata `+` becomes `_`)."""
    value = re.sub(r"[^-A-Za-z0-9_.]", "_", text)[:63].strip("-_.")
    return value or "none"


@dataclass(frozen=True)
class ReleaseKey:
    """A release's identity: one (cluster, namespace, release name) is one helm release."""

    cluster: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.cluster}/{self.namespace}/{self.name}"


@dataclass(frozen=True)
class DesiredRelease:
    key: ReleaseKey
    chart: ChartSpec
    wave: int
    values: Values = field(compare=False)
    config: str  # digest of everything that, changed, needs a helm upgrade
    owner: str | None = None  # SHARED_OWNER for add-ons; None: the Stack's own label
    problem: str = ""  # why its values cannot be rendered on this cluster (action INVALID)
    # Credentials, CA and TLS flags of a private chart source (`herd.plan.chart_sources`).
    source: ChartSource | None = field(default=None, compare=False)

    @property
    def attempt(self) -> str:
        """What a permanent failure is held by: the config, and the chart source's identity
        (its Secrets' resourceVersions), so a fixed credentials Secret is retried without
        making every release upgrade when a Secret rotates."""
        if self.source is None:
            return self.config
        return hashlib.sha256(f"{self.config}/{self.source.identity}".encode()).hexdigest()[:32]

    @property
    def labels(self) -> dict[str, str]:
        return {
            LABEL_CHART: self.chart.name,
            LABEL_WAVE: str(self.wave),
            LABEL_CONFIG: self.config,
            LABEL_VERSION: label_value(self.chart.version),
        }


@dataclass(frozen=True)
class ObservedRelease:
    """What helm's storage says about a release (latest revision), labels included."""

    namespace: str
    name: str
    status: str  # deployed, failed, pending-install, pending-upgrade, ...
    revision: int
    labels: Mapping[str, str] = field(default_factory=dict, compare=False)
    # When helm last wrote this revision (epoch seconds; its storage Secret's
    # modifiedAt/createdAt labels); None when helm did not say.
    modified: float | None = field(default=None, compare=False)

    @property
    def owner(self) -> str | None:
        return self.labels.get(LABEL_STACK)

    @property
    def manager(self) -> str | None:
        return self.labels.get(LABEL_MANAGER)

    @property
    def chart(self) -> str:
        return self.labels.get(LABEL_CHART, self.name)

    @property
    def chart_version(self) -> str | None:
        return self.labels.get(LABEL_VERSION)

    @property
    def wave(self) -> int:
        try:
            return int(self.labels.get(LABEL_WAVE, "0"))
        except ValueError:
            return 0
