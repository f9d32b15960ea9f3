"""Security and observability add-ons: NeuVector and the SUSE Observability agent.

Per the design, add-ons are ordinary charts prepended to a Stack (`herd.plan` puts them
in the first wave and makes every user chart depend on them); this package supplies
them and tells their story in the Stack's status.

| module | job |
|---|---|
| `config` | the controller ConfigMap's keys and the Secret's keys, parsed (pure) |
| `catalog` | `AddonCatalog` (`herd.engine.AddOns`): the add-on charts and per-cluster values |
| `images` | images and workloads in a rendered manifest (pure) |
| `neuvector` | the few NeuVector REST calls, through the Kubernetes service proxy |
| `security` | scan results → release verdicts, `status.security` (pure) |
| `observability` | agent health → `status.observability` (pure) |
| `probe` | after a pass: manifests, NeuVector scans and agent readiness per cluster |
| `enrich` | status + probe observations → sections, conditions, row fields (pure) |
| `gpus` | `nvidia.com/gpu` requested in a manifest, on nodes; the fit warning (pure) |
| `dcgm` | dcgm-exporter's text format → utilization per release (pure) |
| `gpustatus` | GPU facts → row fields, fit warning, `clusterResources` (pure) |
| `gpuprobe` | a cluster's node GPUs and dcgm-exporter samples, through the service proxy |
| `insights` | Herd's dashboards and alerts chart of a Stack, and their counts (pure) |

Callers: the operator's runtime (catalog for the engine; probe + enrich after a pass) and
the CLI (`AddonCatalog.from_file`).
"""

from typing import TYPE_CHECKING

from herd._lazy import lazy_attributes
from herd.addons.config import (
    AGENT,
    NEUVECTOR,
    AddonConfigError,
    AddonsConfig,
    Credentials,
    FailOn,
    parse_config,
    parse_secret,
)
from herd.addons.enrich import (
    OBSERVABILITY_CONFIGURED,
    SECURITY_SCANNED,
    carry_over,
    enrich,
)
from herd.addons.observability import AgentHealth
from herd.addons.security import ClusterScan, ImageScan, ScanReport, ScanState

if TYPE_CHECKING:
    from herd.addons.catalog import AddonCatalog
    from herd.addons.probe import AddonProbe, Observation

# The parts that talk to clusters load on first use, so the pure modules (config,
# security, observability, enrich) can be imported without the kubernetes client.
_LAZY = {
    "AddonCatalog": "herd.addons.catalog",
    "AddonProbe": "herd.addons.probe",
    "Observation": "herd.addons.probe",
}

__getattr__ = lazy_attributes(__name__, _LAZY)


__all__ = [
    "AGENT",
    "NEUVECTOR",
    "OBSERVABILITY_CONFIGURED",
    "SECURITY_SCANNED",
    "AddonCatalog",
    "AddonConfigError",
    "AddonProbe",
    "AddonsConfig",
    "AgentHealth",
    "ClusterScan",
    "Credentials",
    "FailOn",
    "ImageScan",
    "Observation",
    "ScanReport",
    "ScanState",
    "carry_over",
    "enrich",
    "parse_config",
    "parse_secret",
]
