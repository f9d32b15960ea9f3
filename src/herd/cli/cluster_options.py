"""The CLI's cluster options: which kubeconfig files (and contexts) a command targets.

`add_cluster_options` registers them on a command's parser; `parse_cluster_options` turns
them, in command-line order, into `herd.clusters.files.FileCluster`s:

- `--kubeconfig FILE[=ID]`: a cluster using FILE's current context; id ID (default: the
  file name without extension). Followed by `--context`s, FILE is used for those instead.
- `--context CTX[=ID]`: a cluster using context CTX of the preceding `--kubeconfig`; id ID
  (default CTX).
- `--label ID:KEY=VALUE`: a label on cluster ID (repeatable).
- `--clusters FILE`: a YAML list of `{id, kubeconfig, context, labels}`
  (`herd.clusters.files.load_clusters_file`).

Callers: `herd.cli.fleet`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from herd.cli.cluster_flags import OPTIONS_DEST, add_cluster_options
from herd.clusters.files import ClusterConfigError, FileCluster, default_id, load_clusters_file

__all__ = ["OPTIONS_DEST", "add_cluster_options", "parse_cluster_options"]


def parse_cluster_options(options: Sequence[tuple[str, str]]) -> list[FileCluster]:
    """(option, value) pairs in command-line order → clusters, or `ClusterConfigError`."""
    clusters: list[FileCluster] = []
    labels: list[tuple[str, str, str, str]] = []
    file: tuple[Path, str | None, bool] | None = None  # path, its ID, used by a --context

    def flush() -> None:
        if file is not None and not file[2]:
            clusters.append(FileCluster(file[1] or default_id(file[0]), file[0]))

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
        dataclasses.replace(c, labels={**c.labels, **extra[c.id]}) if extra[c.id] else c
        for c in clusters
    ]
