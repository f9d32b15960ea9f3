"""Clusters from kubeconfig files, for the CLI: `FileCluster`, `FileSource` and a clusters file.

`load_clusters_file` reads a YAML list of `{id, kubeconfig, context, labels,
prometheusUrl}` (relative kubeconfig paths are relative to the file; `prometheusUrl` is
the cluster's Prometheus, as the `herd.suse.com/prometheus-url` annotation gives it for
listed clusters); `FileSource` lists `FileCluster`s in an
`herd.clusters.inventory.Inventory`. Reads no kubeconfig: the kubeconfig store checks each
file when the cluster is used, so one bad file skips one cluster.

Callers: `herd.cli.cluster_options` (the command-line options that name these clusters),
`herd.cli.fleet`, tests and benchmarks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from herd.errors import PermanentError
from herd.plan.clusters import Cluster, KubeconfigRef


class ClusterConfigError(PermanentError):
    """A cluster option or clusters-file entry is wrong; the message names it."""


@dataclass(frozen=True)
class FileCluster:
    """One cluster given to the CLI: a kubeconfig file, optionally a context, labels."""

    id: str
    path: Path
    context: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    prometheus_url: str = ""


class FileSource:
    """Clusters from kubeconfig files; all ready (the store reports an unusable file)."""

    def __init__(self, entries: Sequence[FileCluster]) -> None:
        self._entries = tuple(entries)

    async def list_clusters(self) -> list[Cluster]:
        return [
            Cluster(
                id=entry.id,
                name=entry.id,
                labels=entry.labels,
                ready=True,
                source="file",
                kubeconfig=KubeconfigRef.file(entry.path, entry.context),
                prometheus_url=entry.prometheus_url,
            )
            for entry in self._entries
        ]

    def __repr__(self) -> str:
        return f"FileSource({[entry.id for entry in self._entries]})"


# ---------------------------------------------------------------------------------------
# Clusters file


def default_id(path: Path) -> str:
    """A kubeconfig file's cluster id when none is given: its name without extension."""
    return path.name.split(".", 1)[0] or path.name


def _label_value(value: object) -> object:
    # YAML reads `gpu: true` as a boolean; labels are strings, as in Kubernetes.
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if isinstance(value, int | float) else value


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str | None = Field(default=None, min_length=1)
    kubeconfig: str = Field(min_length=1)
    context: str | None = Field(default=None, min_length=1)
    labels: dict[str, Annotated[str, BeforeValidator(_label_value)]] = Field(default_factory=dict)
    prometheusUrl: str = Field(default="", max_length=2048)


def load_clusters_file(path: Path) -> list[FileCluster]:
    """Read a YAML clusters file: a list (or `clusters:` list) of {id, kubeconfig, context,
    labels}. Errors name the file and the entry's field, e.g. `c.yaml: [1].kubeconfig: ...`."""
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as error:
        raise ClusterConfigError(f"{path}: cannot read ({error.strerror})") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ClusterConfigError(f"{path}: not valid YAML{where}") from None
    if isinstance(document, dict) and set(document) == {"clusters"}:
        document = document["clusters"]
    if not isinstance(document, list):
        raise ClusterConfigError(f"{path}: expected a list of clusters")
    clusters = []
    for number, item in enumerate(document):
        try:
            entry = _Entry.model_validate(item)
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            where = f"[{number}].{where}" if where else f"[{number}]"
            raise ClusterConfigError(f"{path}: {where}: {first['msg']}") from None
        kubeconfig = (path.parent / Path(entry.kubeconfig).expanduser()).absolute()
        cluster_id = entry.id or entry.context or default_id(kubeconfig)
        clusters.append(
            FileCluster(cluster_id, kubeconfig, entry.context, entry.labels, entry.prometheusUrl)
        )
    return clusters
