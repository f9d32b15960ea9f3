"""The fixture chart catalog: every chart (name and version) the e2e chart repository publishes.

Role: turn the chart sources under ``e2e/charts/`` into ready-to-package chart directories.
Several published charts share one source so similar charts are written once: ``app`` is
published at 0.1.0 and 0.2.0, ``never-ready`` plus the offline stand-ins for the README's
example charts (``ollama``, ``qdrant``, ...) are all the ``workload`` source under another
name, and ``slow`` is the ``many-configmaps`` source. Staging copies a source and stamps
``Chart.yaml`` (name, version, appVersion) and, where an entry says so, default values and
an overlay (files of ``charts/overlays/<name>`` over the copy: ``gadgets`` 0.2.0's new CRDs);
the result is an ordinary Helm chart.

Callers: ``e2e.testbed.chartrepo`` packages what ``stage`` writes; tests read ``CATALOG`` to
know what the repository must serve.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

CHARTS_DIR = Path(__file__).resolve().parent.parent / "charts"
OVERLAYS_DIR = CHARTS_DIR / "overlays"


@dataclass(frozen=True)
class FixtureChart:
    """One published chart version and the source directory it is made from."""

    name: str
    version: str
    app_version: str
    source: str
    # Top-level keys that replace the source's values.yaml defaults.
    values: Mapping[str, Any] = field(default_factory=dict)
    description: str | None = None
    # A directory of ``overlays/`` whose files replace or add to the source's (a chart
    # version whose crds/ or subcharts differ from the source's).
    overlay: str | None = None

    @property
    def archive_name(self) -> str:
        """The file name ``helm package`` gives this chart."""
        return f"{self.name}-{self.version}.tgz"


def _stand_in(name: str, version: str, app_version: str) -> FixtureChart:
    """An offline stand-in for a public chart that the README's example stacks deploy."""
    return FixtureChart(
        name=name,
        version=version,
        app_version=app_version,
        source="workload",
        description=f"Herd e2e fixture - offline stand-in for the public {name} chart.",
    )


CATALOG: tuple[FixtureChart, ...] = (
    FixtureChart("app", "0.1.0", "0.1.0", "app"),
    FixtureChart("app", "0.2.0", "0.2.0", "app"),
    FixtureChart("with-crd", "0.1.0", "0.1.0", "with-crd"),
    FixtureChart("with-hook", "0.1.0", "0.1.0", "with-hook"),
    FixtureChart("with-test", "0.1.0", "0.1.0", "with-test"),
    # The CRD-upgrade fixture: 0.2.0 changes the Gadget CRD and adds a subchart's CRD.
    FixtureChart("gadgets", "0.1.0", "0.1.0", "gadgets"),
    FixtureChart("gadgets", "0.2.0", "0.2.0", "gadgets", overlay="gadgets-0.2.0"),
    FixtureChart(
        "never-ready",
        "0.1.0",
        "0.1.0",
        "workload",
        # No node carries this label, so the pod stays Pending and `helm --wait` times out.
        # Fake (kwok) nodes report every scheduled pod Ready, so unschedulable is the only
        # honest way to never become ready there.
        values={"nodeSelector": {"herd.test/never": "true"}},
        description="Herd e2e fixture - a Deployment whose pod can never be scheduled.",
    ),
    FixtureChart("broken", "0.1.0", "0.1.0", "broken"),
    # The benchmark's slow chart: 400 ConfigMaps, about 11 s (`count` sets how many).
    FixtureChart("slow", "0.1.0", "0.1.0", "many-configmaps"),
    FixtureChart("core", "2.8.6", "5.4.4", "core"),
    FixtureChart("suse-observability-agent", "1.2.16", "3.0.0", "suse-observability-agent"),
    _stand_in("gpu-operator", "23.9.1", "v23.9.1"),
    _stand_in("qdrant", "0.7.4", "v1.7.3"),
    _stand_in("ollama", "0.59.0", "0.3.14"),
    _stand_in("kserve", "0.11.2", "v0.11.2"),
    _stand_in("mlflow", "0.7.19", "2.8.1"),
    _stand_in("jupyterhub", "3.1.0", "4.0.2"),
    # GPU values as the real otwld/ollama-helm 1.x: `ollama.gpu.enabled` puts
    # `nvidia.com/gpu` in the container's limits.
    FixtureChart("ollama", "1.4.0", "0.5.7", "ollama-gpu"),
)


def find(name: str, version: str) -> FixtureChart:
    """The catalog entry for one chart version; KeyError names it when absent."""
    for chart in CATALOG:
        if (chart.name, chart.version) == (name, version):
            return chart
    raise KeyError(f"no fixture chart {name} {version}")


def stage(dest: Path) -> list[Path]:
    """Write one chart directory per catalog entry under ``dest`` (emptied first)."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    return [_stage_one(chart, dest / f"{chart.name}-{chart.version}") for chart in CATALOG]


def _stage_one(chart: FixtureChart, target: Path) -> Path:
    shutil.copytree(CHARTS_DIR / chart.source, target)
    if chart.overlay is not None:
        shutil.copytree(OVERLAYS_DIR / chart.overlay, target, dirs_exist_ok=True)
    metadata = _read_yaml(target / "Chart.yaml")
    metadata.update(name=chart.name, version=chart.version, appVersion=chart.app_version)
    if chart.description is not None:
        metadata["description"] = chart.description
    _write_yaml(target / "Chart.yaml", metadata)
    if chart.values:
        values = _read_yaml(target / "values.yaml")
        _write_yaml(target / "values.yaml", {**values, **chart.values})
    return target


def _read_yaml(path: Path) -> dict[str, Any]:
    loaded = yaml.safe_load(path.read_text()) or {}
    if not isinstance(loaded, dict):
        raise ValueError(f"{path} is not a YAML mapping")
    return loaded


def _write_yaml(path: Path, data: Mapping[str, Any]) -> None:
    path.write_text(yaml.safe_dump(dict(data), sort_keys=False))
