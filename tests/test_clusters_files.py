"""Clusters for the CLI: --kubeconfig/--context/--label/--clusters, and the clusters file."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from herd.cli.cluster_options import OPTIONS_DEST, add_cluster_options, parse_cluster_options
from herd.clusters.files import ClusterConfigError, FileCluster, FileSource, load_clusters_file


def parse(argv: list[str]) -> list[FileCluster]:
    parser = argparse.ArgumentParser()
    add_cluster_options(parser)
    return parse_cluster_options(getattr(parser.parse_args(argv), OPTIONS_DEST))


def summary(clusters: list[FileCluster]) -> list[tuple[str, str, str | None, dict[str, str]]]:
    return [(c.id, c.path.name, c.context, dict(c.labels)) for c in clusters]


def test_kubeconfig_files_contexts_and_labels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    clusters = parse(
        [
            "--kubeconfig", "prod-1.yaml",
            "--kubeconfig", "b.yaml=edge-7",
            "--label", "edge-7:env=dev",
            "--kubeconfig", "fleet.yaml",
            "--context", "eu",
            "--context", "us=us-east",
            "--label", "prod-1:env=prod",
            "--label", "prod-1:gpu=true",
        ]
    )  # fmt: skip
    assert summary(clusters) == [
        ("prod-1", "prod-1.yaml", None, {"env": "prod", "gpu": "true"}),
        ("edge-7", "b.yaml", None, {"env": "dev"}),
        ("eu", "fleet.yaml", "eu", {}),
        ("us-east", "fleet.yaml", "us", {}),
    ]
    assert clusters[0].path == tmp_path / "prod-1.yaml"  # absolute


def test_no_options_no_clusters() -> None:
    assert parse([]) == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--context", "eu"], "--context eu: give --kubeconfig FILE before --context"),
        (["--kubeconfig", "a=x", "--context", "eu"], "--context eu: --kubeconfig"),
        (["--kubeconfig", "a.yaml="], "--kubeconfig a.yaml=: expected FILE or FILE=ID"),
        (["--kubeconfig", "a", "--label", "a:env"], "--label a:env: expected ID:KEY=VALUE"),
        (["--kubeconfig", "a", "--label", "env=prod"], "--label env=prod: expected ID:KEY=VALUE"),
        (["--kubeconfig", "a", "--label", "b:env=x"], "--label b:env=x: no cluster 'b' (known: a)"),
        (["--kubeconfig", "x/a.yaml", "--kubeconfig", "y/a.yml"], "cluster id 'a' is given twice"),
    ],
)
def test_option_errors_name_the_argument(argv: list[str], message: str) -> None:
    with pytest.raises(ClusterConfigError) as raised:
        parse(argv)
    assert str(raised.value).startswith(message)


def test_clusters_file(tmp_path: Path) -> None:
    (tmp_path / "clusters.yaml").write_text(
        """
- {id: prod-1, kubeconfig: kc/prod-1.yaml, labels: {env: prod, gpu: true, tier: 1}}
- {kubeconfig: /abs/fleet.yaml, context: eu}
- {kubeconfig: edge.kubeconfig}
"""
    )
    clusters = parse(["--clusters", str(tmp_path / "clusters.yaml"), "--label", "eu:env=dev"])
    assert summary(clusters) == [
        ("prod-1", "prod-1.yaml", None, {"env": "prod", "gpu": "true", "tier": "1"}),
        ("eu", "fleet.yaml", "eu", {"env": "dev"}),
        ("edge", "edge.kubeconfig", None, {}),
    ]
    assert clusters[0].path == tmp_path / "kc" / "prod-1.yaml"
    assert clusters[1].path == Path("/abs/fleet.yaml")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{a: [", "not valid YAML at line 1"),
        ("{id: x}", "expected a list of clusters"),
        ("- {id: x}", "[0].kubeconfig: Field required"),
        ("- {kubeconfig: a}\n- {kubeconfig: b, kontext: c}", "[1].kontext: Extra inputs"),
        ("- {kubeconfig: a, labels: {env: [1]}}", "[0].labels.env: Input should be a valid"),
        ("- {kubeconfig: a}\n- {kubeconfig: b/a}", "cluster id 'a' is given twice"),
        ("- 3", "[0]: Input should be a valid dictionary"),
    ],
)
def test_clusters_file_errors_name_the_entry(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(content)
    with pytest.raises(ClusterConfigError) as raised:
        parse_cluster_options([("--clusters", str(path))])
    assert message in str(raised.value)


def test_missing_clusters_file(tmp_path: Path) -> None:
    with pytest.raises(ClusterConfigError, match=r"nope.yaml: cannot read \(No such file"):
        load_clusters_file(tmp_path / "nope.yaml")


async def test_file_source_lists_ready_file_clusters(tmp_path: Path) -> None:
    source = FileSource([FileCluster("a", tmp_path / "a.yaml", "ctx", {"env": "prod"})])
    [cluster] = await source.list_clusters()
    assert (cluster.id, cluster.name, dict(cluster.labels), cluster.ready, cluster.source) == (
        "a",
        "a",
        {"env": "prod"},
        True,
        "file",
    )
    assert cluster.kubeconfig.describe() == f"file {tmp_path / 'a.yaml'}, context ctx"


async def test_clusters_file_prometheus_url_survives_extra_labels(tmp_path: Path) -> None:
    (tmp_path / "clusters.yaml").write_text(
        "- {id: p, kubeconfig: p.yaml, prometheusUrl: 'http://prom.p:9090'}\n"
        "- {id: q, kubeconfig: q.yaml}\n"
    )
    clusters = parse(["--clusters", str(tmp_path / "clusters.yaml"), "--label", "p:env=dev"])
    listed = await FileSource(clusters).list_clusters()
    assert [(c.id, dict(c.labels), c.prometheus_url) for c in listed] == [
        ("p", {"env": "dev"}, "http://prom.p:9090"),
        ("q", {}, ""),
    ]
