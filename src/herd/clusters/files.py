"""Clusters from kubeconfig files, for the CLI: command-line options and a clusters file.

Callers: `herd.cli` registers the options with `add_cluster_options` and turns them into
`FileCluster`s with `parse_cluster_options`, then lists them through a `FileSource` in an
`herd.clusters.inventory.Inventory`. Reads no kubeconfig: the kubeconfig store checks each file when
the cluster is used, so one bad file skips one cluster.

Options, in command-line order:

- `--kubeconfig FILE[=ID]`: a cluster using FILE's current context; id ID (default: the
  file name without extension). Followed by `--context`s, FILE is used for those instead.
- `--context CTX[=ID]`: a cluster using context CTX of the preceding `--kubeconfig`; id ID
  (default CTX).
- `--label ID:KEY=VALUE`: a label on cluster ID (repeatable).
- `--clusters FILE`: a YAML list of `{id, kubeconfig, context, labels}`; relative
  kubeconfig paths are relative to FILE.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from herd.errors import PermanentError
from herd.plan.clusters import Cluster, KubeconfigRef

OPTIONS_DEST = "cluster_options"


class ClusterConfigError(PermanentError):
    """A cluster option or clusters-file entry is wrong; the message names it."""


@dataclass(frozen=True)
class FileCluster:
    """One cluster given to the CLI: a kubeconfig file, optionally a context, labels."""

    id: str
    path: Path
    context: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)


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
            )
            for entry in self._entries
        ]

    def __repr__(self) -> str:
        return f"FileSource({[entry.id for entry in self._entries]})"


# ---------------------------------------------------------------------------------------
# Command line


class _Ordered(argparse.Action):
    """Collects every cluster option as (option, value) in command-line order."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        options = list(getattr(namespace, OPTIONS_DEST, None) or [])
        options.append((option_string or "", str(values)))
        setattr(namespace, OPTIONS_DEST, options)


def add_cluster_options(parser: argparse.ArgumentParser) -> None:
    """Register --kubeconfig/--context/--label/--clusters; read back with
    `parse_cluster_options(getattr(args, OPTIONS_DEST))`."""
    parser.set_defaults(**{OPTIONS_DEST: []})
    group = parser.add_argument_group("target clusters (kubeconfig files)")
    for flag, metavar, text in (
        ("--kubeconfig", "FILE[=ID]", "a cluster from FILE's current context (repeatable)"),
        ("--context", "CTX[=ID]", "a cluster from context CTX of the preceding --kubeconfig"),
        ("--label", "ID:KEY=VALUE", "label cluster ID, for Stack selectors (repeatable)"),
        ("--clusters", "FILE", "YAML list of {id, kubeconfig, context, labels}"),
    ):
        group.add_argument(flag, metavar=metavar, help=text, action=_Ordered, dest=OPTIONS_DEST)


def parse_cluster_options(options: Sequence[tuple[str, str]]) -> list[FileCluster]:
    """(option, value) pairs in command-line order → clusters, or `ClusterConfigError`."""
    clusters: list[FileCluster] = []
    labels: list[tuple[str, str, str, str]] = []
    file: tuple[Path, str | None, bool] | None = None  # path, its ID, used by a --context

    def flush() -> None:
        if file is not None and not file[2]:
            clusters.append(FileCluster(file[1] or _stem(file[0]), file[0]))

    for option, value in options:
        argument = f"{option} {value}"
        if option == "--kubeconfig":
            flush()
            path, cluster_id = _split_id(value, argument)
            file = (path, cluster_id, False)
        elif option == "--context":
            if file is None:
                raise ClusterConfigError(f"{argument}: give --kubeconfig FILE before --context")
            if file[1] is not None:
                raise ClusterConfigError(
                    f"{argument}: --kubeconfig {file[0]}={file[1]} names its current context's"
                    " cluster; name a context's cluster as --context CTX=ID instead"
                )
            context, cluster_id = value.rpartition("=")[::2] if "=" in value else (value, "")
            if not context:
                raise ClusterConfigError(f"{argument}: expected CTX or CTX=ID")
            clusters.append(FileCluster(cluster_id or context, file[0], context))
            file = (file[0], None, True)
        elif option == "--label":
            cluster_id, _, pair = value.partition(":")
            key, equals, label = pair.partition("=")
            if not cluster_id or not key.strip() or not equals:
                raise ClusterConfigError(f"{argument}: expected ID:KEY=VALUE")
            labels.append((argument, cluster_id, key.strip(), label.strip()))
        elif option == "--clusters":
            flush()
            file = None
            clusters.extend(load_clusters_file(Path(value).expanduser()))
        else:
            raise ClusterConfigError(f"{argument}: not a cluster option")
    flush()
    return _with_labels(_unique(clusters), labels)


def _split_id(value: str, argument: str) -> tuple[Path, str | None]:
    file, equals, cluster_id = value.rpartition("=") if "=" in value else (value, "", "")
    if not file or (equals and not cluster_id):
        raise ClusterConfigError(f"{argument}: expected FILE or FILE=ID")
    return Path(file).expanduser().absolute(), cluster_id or None


def _stem(path: Path) -> str:
    return path.name.split(".", 1)[0] or path.name


def _unique(clusters: list[FileCluster]) -> list[FileCluster]:
    seen: dict[str, FileCluster] = {}
    for cluster in clusters:
        if cluster.id in seen:
            raise ClusterConfigError(
                f"cluster id {cluster.id!r} is given twice ({seen[cluster.id].path} and "
                f"{cluster.path}); set distinct ids with FILE=ID or CTX=ID"
            )
        seen[cluster.id] = cluster
    return clusters


def _with_labels(
    clusters: list[FileCluster], labels: list[tuple[str, str, str, str]]
) -> list[FileCluster]:
    extra: dict[str, dict[str, str]] = {cluster.id: {} for cluster in clusters}
    for argument, cluster_id, key, value in labels:
        if cluster_id not in extra:
            known = ", ".join(extra) or "none"
            raise ClusterConfigError(f"{argument}: no cluster {cluster_id!r} (known: {known})")
        extra[cluster_id][key] = value
    return [
        FileCluster(c.id, c.path, c.context, {**c.labels, **extra[c.id]}) if extra[c.id] else c
        for c in clusters
    ]


# ---------------------------------------------------------------------------------------
# Clusters file


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
        cluster_id = entry.id or entry.context or _stem(kubeconfig)
        clusters.append(FileCluster(cluster_id, kubeconfig, entry.context, entry.labels))
    return clusters
