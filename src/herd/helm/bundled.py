"""Charts shipped inside Herd's Python package (`herd/charts/<name>`), e.g. `herd-insights`.

A `ChartSpec` whose `repo` is `BUNDLED_REPO` names one of them: `herd.helm.chart_cache.ChartCache`
copies it from the package instead of pulling it (the address is under `.invalid`, a
name that never resolves, so nothing is ever fetched from it). Callers: `herd.helm.client`,
`herd.addons.insights`.
"""

from __future__ import annotations

from pathlib import Path

BUNDLED_REPO = "https://bundled.herd.invalid/charts"
_CHARTS = Path(__file__).resolve().parent.parent / "charts"


def bundled_chart(name: str, version: str) -> Path | None:
    """The packaged chart directory of `name` at `version`; None when Herd has no such."""
    directory = _CHARTS / name
    chart = directory / "Chart.yaml"
    if "/" in name or name.startswith(".") or not chart.is_file():
        return None
    for line in chart.read_text().splitlines():
        if line.startswith("version:"):
            return directory if line.split(":", 1)[1].strip().strip("\"'") == version else None
    return None
