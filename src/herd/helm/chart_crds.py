"""The CustomResourceDefinitions a chart ships in `crds/`, as helm would install them. Pure.

For `charts[].crds: CreateReplace` Herd applies these itself (`herd.helm.crd_apply`), because
helm creates them on install and never changes them afterwards. Which files count follows
helm's own loader (`Chart.CRDObjects` after `ProcessDependencies`):

- every file below the chart's `crds/` (any depth) ending `.yaml`, `.yml` or `.json`
  (case-insensitive), never rendered as a template;
- the same for every subchart in `charts/` (unpacked directories and `.tgz` archives,
  recursively), except subcharts that the release's values disable: a dependency's
  `condition` (the first of its comma-separated value paths that holds a boolean), else its
  `tags` (the root's `tags` values; disabled only when every one of its tags is false).
  Conditions are read against the chart's `values.yaml` merged with the release's values.

Each file may hold several YAML documents; empty ones are skipped. Only
`apiextensions.k8s.io/v1` `CustomResourceDefinition`s are accepted: anything else in a
`crds/` directory is a `ChartCrdError` naming the file (`chart/charts/sub/crds/x.yaml`, as
helm names it), and the release fails without touching the cluster.

The chart is tenant input, so reading it is bounded and follows helm's loader:

- the root's `.helmignore` is honoured (`herd.helm.helmignore`), as `helm template` honours it,
  so Herd applies exactly the crds/ the render check saw (reading helm's own output instead
  would need a second `helm template` per release and cluster, and would not see
  `CreateReplace`'s subchart selection for admin Stacks, which have no render check);
- `ReadLimits`: files and archive members, one file's size, everything decompressed
  (declared sizes count before a member is read or skipped) and subchart nesting depth;
  past one, a `ChartCrdError` says which (a 146 KB archive that would be 150 MB is refused
  from its tar header, before anything is decompressed);
- YAML is parsed without alias expansion and within bounds (`herd.plan.yamlsafe`).

Reads the chart directory the rollout pulled (`herd.helm.chart_cache.ChartCache`); no Kubernetes, no
helm. The rollout runs it in a worker process (`herd.helm.worker`) with a time and memory
limit. Callers: `herd.rollout.actions` (through `herd.helm.crd_apply`); table-tested in
`tests/test_chart_crds.py`, bounds in `tests/test_hostile_bytes.py`.
"""

from __future__ import annotations

import io
import os
import tarfile
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import yaml

from herd.errors import ReleaseError
from herd.helm.helmignore import Rules
from herd.plan import yamlsafe
from herd.plan.desired import deep_merge
from herd.plan.yamlsafe import MIB

CrdPolicy = Literal["Skip", "Create", "CreateReplace"]
CREATE: CrdPolicy = "Create"
SKIP: CrdPolicy = "Skip"
CREATE_REPLACE: CrdPolicy = "CreateReplace"

CRD_API_VERSION = "apiextensions.k8s.io/v1"
CRD_KIND = "CustomResourceDefinition"
_MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")

Files = dict[str, bytes]  # one chart's files by path relative to the chart's root


class ChartCrdError(ReleaseError, ValueError):
    """A chart's crds/ cannot be applied as it is; the message names the file."""


@dataclass(frozen=True)
class ChartFile:
    """One file of a crds/ directory: `path` as helm names it (`chart/charts/sub/crds/x.yaml`)."""

    path: str
    content: bytes


@dataclass(frozen=True)
class Crd:
    """One CustomResourceDefinition to apply: its name, the file it came from, its body."""

    name: str
    source: str
    body: Mapping[str, Any]


def crd_note(policy: CrdPolicy, count: int | None = None) -> str:
    """What a row says about the CRDs of an install or upgrade ("" for helm's default).

    `count`: how many CRDs CreateReplace applies, once the chart was read.
    """
    if policy == CREATE:
        return ""
    shown = count is not None and policy == CREATE_REPLACE
    return f"; CRDs: {policy}" + (f" ({count})" if shown else "")


def chart_crds(chart_dir: Path, values: Mapping[str, Any] | None = None) -> list[Crd]:
    """The CRDs of the unpacked chart at `chart_dir` with release `values` (`ChartCrdError`)."""
    return parse_crds(crd_files(chart_dir, values))


def crd_files(chart_dir: Path, values: Mapping[str, Any] | None = None) -> list[ChartFile]:
    """Every crds/ file of the chart and its enabled subcharts, the root's first."""
    budget = _Budget(LIMITS)
    try:
        files = _read_directory(chart_dir, budget)
    except OSError as error:
        raise ChartCrdError(f"cannot read chart {chart_dir.name}: {error.strerror}") from None
    name = _chart_name(files, chart_dir.name)
    values = dict(values or {})
    return list(_collect(name, files, values, _tags(values, files, name), budget))


def parse_crds(files: list[ChartFile]) -> list[Crd]:
    """The CRDs in `files`: each document must be an apiextensions.k8s.io/v1 CRD."""
    crds: list[Crd] = []
    for file in files:
        try:
            documents = list(yamlsafe.load_all(file.content))
        except yamlsafe.YamlLimitError as error:
            raise ChartCrdError(f"{file.path} is refused: {error}") from None
        except (yaml.YAMLError, UnicodeDecodeError) as error:
            problem = type(error).__name__
            raise ChartCrdError(f"{file.path} is not valid YAML ({problem})") from None
        for document in documents:
            if document is None:
                continue
            crds.append(_crd(file.path, document))
    return crds


def _crd(path: str, document: object) -> Crd:
    if not isinstance(document, dict):
        raise ChartCrdError(f"{path} holds a document that is not an object")
    api_version, kind = document.get("apiVersion"), document.get("kind")
    if (api_version, kind) != (CRD_API_VERSION, CRD_KIND):
        raise ChartCrdError(
            f"{path} holds a {kind or 'document without kind'} ({api_version or 'no apiVersion'})"
            f": only {CRD_API_VERSION} {CRD_KIND}s are applied from crds/"
        )
    metadata = document.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    if not isinstance(name, str) or not name:
        raise ChartCrdError(f"{path} holds a {CRD_KIND} without metadata.name")
    return Crd(name, path, document)


# -- the chart tree ----------------------------------------------------------------------


def _collect(
    name: str, files: Files, values: Mapping[str, Any], tags: Mapping[str, Any], budget: _Budget
) -> Iterator[ChartFile]:
    for path in sorted(files):
        if path.startswith("crds/") and path.lower().endswith(_MANIFEST_SUFFIXES):
            yield ChartFile(f"{name}/{path}", files[path])
    merged = deep_merge(_values(files, name), values)
    subcharts = _subcharts(name, files, budget)
    listed: set[str] = set()
    for dependency in _dependencies(files, name):
        chart = str(dependency.get("name", ""))
        listed.add(chart)
        key = str(dependency.get("alias") or chart)  # an alias is its own copy of the chart
        if chart in subcharts and _enabled(dependency, merged, tags):
            sub = _under(merged, key)
            yield from _collect(f"{name}/charts/{key}", subcharts[chart], sub, tags, budget)
    for chart in sorted(set(subcharts) - listed):  # in charts/ without a dependency entry
        sub = _under(merged, chart)
        yield from _collect(f"{name}/charts/{chart}", subcharts[chart], sub, tags, budget)


def _under(values: Mapping[str, Any], key: str) -> dict[str, Any]:
    found = values.get(key)
    return found if isinstance(found, dict) else {}


def _enabled(
    dependency: Mapping[str, Any], values: Mapping[str, Any], tags: Mapping[str, Any]
) -> bool:
    """helm's rule: the first condition path holding a boolean decides, then the tags."""
    condition = dependency.get("condition")
    if isinstance(condition, str):
        for path in (p.strip() for p in condition.split(",")):
            found = _lookup(values, path) if path else None
            if isinstance(found, bool):
                return found
    dependency_tags = dependency.get("tags")
    if isinstance(dependency_tags, list) and dependency_tags:
        states = [tags.get(str(tag)) for tag in dependency_tags]
        if any(state is True for state in states):
            return True
        if all(state is False for state in states):
            return False
    return True


def _lookup(values: Mapping[str, Any], path: str) -> object:
    current: object = values
    for part in path.split("."):
        if not isinstance(current, Mapping) or part not in current:
            return None
        current = current[part]
    return current


def _tags(values: Mapping[str, Any], files: Files, name: str) -> Mapping[str, Any]:
    tags = deep_merge(_values(files, name), values).get("tags")
    return tags if isinstance(tags, dict) else {}


def _subcharts(name: str, files: Files, budget: _Budget) -> dict[str, Files]:
    """The charts in `charts/`, by chart name (Chart.yaml's, as helm matches dependencies)."""
    groups: dict[str, Files] = {}
    for path, content in files.items():
        parts = PurePosixPath(path).parts
        if len(parts) < 2 or parts[0] != "charts" or path.endswith(".prov"):
            continue
        groups.setdefault(parts[1], {})["/".join(parts[2:])] = content
    found: dict[str, Files] = {}
    for entry, group in sorted(groups.items()):
        if entry.endswith(".tgz") and "" in group:
            sub = _read_archive(group[""], f"{name}/charts/{entry}", budget)
        elif "Chart.yaml" in group:
            sub = group
        else:
            continue  # helm would refuse the chart; `helm pull` gave us one it accepted
        found[_chart_name(sub, entry.removesuffix(".tgz"))] = sub
    return found


def _dependencies(files: Files, name: str) -> list[Mapping[str, Any]]:
    metadata = _yaml_mapping(files, "Chart.yaml", name)
    dependencies = metadata.get("dependencies")
    if not isinstance(dependencies, list):
        return []
    return [d for d in dependencies if isinstance(d, dict)]


def _chart_name(files: Files, default: str) -> str:
    name = _yaml_mapping(files, "Chart.yaml", default).get("name")
    return name if isinstance(name, str) and name else default


def _values(files: Files, name: str) -> dict[str, Any]:
    return _yaml_mapping(files, "values.yaml", name)


def _yaml_mapping(files: Files, path: str, chart: str) -> dict[str, Any]:
    if path not in files:
        return {}
    try:
        loaded = yamlsafe.load(files[path])
    except yamlsafe.YamlLimitError as error:
        raise ChartCrdError(f"{chart}/{path} is refused: {error}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        problem = type(error).__name__
        raise ChartCrdError(f"{chart}/{path} is not valid YAML ({problem})") from None
    return loaded if isinstance(loaded, dict) else {}


def _wanted(path: str) -> bool:
    """The files the CRD selection reads: metadata, values, crds/ and subcharts."""
    return path in ("Chart.yaml", "values.yaml") or path.startswith(("crds/", "charts/"))


# -- bounded reading -----------------------------------------------------------------------


@dataclass(frozen=True)
class ReadLimits:
    """What reading one chart (its subcharts included) may cost."""

    files: int = 10_000  # files and archive members, all levels together
    file_bytes: int = 16 * MIB  # one file (a big crds/ file is a few MB)
    total_bytes: int = 64 * MIB  # everything decompressed, read or skipped, all levels
    depth: int = 5  # subcharts inside subcharts


LIMITS = ReadLimits()


class _Budget:
    """What reading one chart has cost so far; `ChartCrdError` past `LIMITS`."""

    def __init__(self, limits: ReadLimits) -> None:
        self.limits = limits
        self._files = 0
        self._bytes = 0

    def take(self, where: str, size: int) -> None:
        self._files += 1
        self._bytes += size
        if self._files > self.limits.files:
            raise ChartCrdError(f"{where}: the chart holds more than {self.limits.files} files")
        if size > self.limits.file_bytes:
            raise ChartCrdError(
                f"{where} is {size} bytes, more than the {self.limits.file_bytes} allowed"
            )
        if self._bytes > self.limits.total_bytes:
            raise ChartCrdError(
                f"{where}: the chart decompresses to more than {self.limits.total_bytes} bytes"
            )


def _read_directory(root: Path, budget: _Budget) -> Files:
    """The wanted files of an unpacked chart, skipping what its `.helmignore` ignores, as
    helm's `LoadDir` does (so `helm template` and Herd see the same crds/)."""
    ignore = root / ".helmignore"
    rules = Rules(_read_file(ignore, ".helmignore", budget).decode(errors="replace"))
    files: Files = {}
    for directory, subdirectories, names in os.walk(root):
        base = Path(directory).relative_to(root).as_posix()
        prefix = "" if base == "." else f"{base}/"
        subdirectories[:] = sorted(
            d
            for d in subdirectories
            if not rules.ignored(prefix + d, True) and not Path(directory, d).is_symlink()
        )
        for name in sorted(names):
            relative, path = prefix + name, Path(directory, name)
            # A symlink could point out of the chart (an archive helm pulled holds none).
            if path.is_symlink() or rules.ignored(relative, False) or not _wanted(relative):
                continue
            files[relative] = _read_file(path, relative, budget)
    return files


def _read_file(path: Path, where: str, budget: _Budget) -> bytes:
    if not path.is_file() or path.is_symlink():
        return b""
    budget.take(where, path.stat().st_size)
    with path.open("rb") as handle:
        content = handle.read(budget.limits.file_bytes + 1)  # never more than allowed
    if len(content) > budget.limits.file_bytes:  # it grew since the stat
        budget.take(where, len(content))
    return content


def _read_archive(content: bytes, where: str, budget: _Budget) -> Files:
    """A packaged subchart's files, without the archive's top directory.

    Every member's declared size counts against the budget before it is read or skipped
    (skipping a member of a compressed stream decompresses it too).
    """
    if where.count("/charts/") > budget.limits.depth:
        raise ChartCrdError(f"{where}: subcharts nested deeper than {budget.limits.depth}")
    files: Files = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(content), mode="r:*") as archive:
            for member in archive:
                budget.take(f"{where}:{member.name[:200]}", member.size)
                if not member.isfile():
                    continue
                relative = "/".join(PurePosixPath(member.name).parts[1:])
                extracted = archive.extractfile(member)
                if relative and extracted is not None and _wanted(relative):
                    files[relative] = extracted.read(budget.limits.file_bytes)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
        raise ChartCrdError(f"{where} is not a readable chart archive ({error})") from None
    return files
