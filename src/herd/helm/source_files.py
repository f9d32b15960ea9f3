"""The files through which a private chart source reaches helm, for one pull.

`source_files` makes a fresh 0700 directory under Herd's private helm home holding, 0600
from the first byte:
- `registry.json`: a docker config (`auths`) for an `oci://` registry (`--registry-config`);
- `repositories.yaml` + a repository cache, for an https:// repository: one named entry
  with username/password, caFile and insecure_skip_tls_verify (`--repository-config`,
  `--repository-cache`), pulled as `<name>/<chart>` after `helm repo update <name>`;
- `ca.crt`, the private CA (`--ca-file`).
Credentials therefore never appear on a helm command line (`ps`, pyhelm3's INFO log); the
flags name files only. The directory is removed when the pull is done, failed or cancelled.

Callers: `herd.helm.chart_cache.ChartCache`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from herd.api.charts import ChartSpec
from herd.plan.chart_sources import ChartSource, registry_config, repository_config


@dataclass(frozen=True)
class PullFiles:
    """What one pull passes to helm: flags naming files, and for an https repository the
    named repository to refresh first (`repo_name`) and the chart reference to pull."""

    ref: str
    repo_url: str | None  # `--repo` (anonymous https repositories only)
    flags: list[str] = field(default_factory=list)
    repo_name: str | None = None
    update_flags: list[str] = field(default_factory=list)


def write_private(path: Path, data: bytes) -> None:
    """Write `data` 0600 from the first byte (never readable by others, even briefly)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


@contextmanager
def source_files(home: Path, chart: ChartSpec, source: ChartSource | None) -> Iterator[PullFiles]:
    """The pull's helm arguments, with the source's files alive until the block ends."""
    oci = chart.repo.startswith("oci://")
    if source is None:
        if oci:
            yield PullFiles(f"{chart.repo.rstrip('/')}/{chart.chart_name}", None)
        else:
            yield PullFiles(chart.chart_name, chart.repo)
        return
    parent = home / "sources"
    parent.mkdir(mode=0o700, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix="src-", dir=parent))  # 0700
    try:
        yield _write(directory, chart, source, oci)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _write(directory: Path, chart: ChartSpec, source: ChartSource, oci: bool) -> PullFiles:
    flags: list[str] = []
    ca_file = None
    if source.ca is not None:
        ca_file = directory / "ca.crt"
        write_private(ca_file, source.ca)
        flags.append(f"--ca-file={ca_file}")
    if source.insecure:
        flags.append("--insecure-skip-tls-verify")
    if oci:
        registry = directory / "registry.json"
        write_private(registry, registry_config(source, chart.repo))
        flags.append(f"--registry-config={registry}")
        if source.plain_http:
            flags.append("--plain-http")
        return PullFiles(f"{chart.repo.rstrip('/')}/{chart.chart_name}", None, flags)
    name = f"herd-{source.identity}"
    repositories = directory / "repositories.yaml"
    write_private(
        repositories,
        repository_config(source, name, chart.repo, str(ca_file) if ca_file else None),
    )
    cache = directory / "cache"
    cache.mkdir(mode=0o700)
    where = [f"--repository-config={repositories}", f"--repository-cache={cache}"]
    return PullFiles(f"{name}/{chart.chart_name}", None, [*flags, *where], name, where)
