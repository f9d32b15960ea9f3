"""Target resolution: LabelSelector semantics, clusterIds by id or name, union, skips, order."""

from __future__ import annotations

from typing import Any

import pytest

from herd.api import LabelSelector, SkippedCluster, Targets
from herd.plan.clusters import Cluster, KubeconfigRef
from herd.plan.targets import resolve_targets, selector_matches


def cluster(cluster_id: str, name: str = "", ready: bool = True, **labels: str) -> Cluster:
    name = name or f"{cluster_id}-name"
    return Cluster(
        id=cluster_id,
        name=name,
        labels=labels,
        ready=ready,
        source="rancher",
        kubeconfig=KubeconfigRef.secret("fleet-default", f"{name}-kubeconfig", "value"),
    )


def selector(**body: Any) -> LabelSelector:
    return LabelSelector.model_validate(body)


def expr(key: str, operator: str, *values: str) -> dict[str, Any]:
    return {"key": key, "operator": operator, "values": list(values)}


PROD_GPU = {"env": "prod", "gpu": "true"}


@pytest.mark.parametrize(
    ("body", "labels", "expected"),
    [
        ({"matchLabels": {"env": "prod"}}, PROD_GPU, True),
        ({"matchLabels": {"env": "prod", "gpu": "true"}}, PROD_GPU, True),
        ({"matchLabels": {"env": "prod", "gpu": "false"}}, PROD_GPU, False),
        ({"matchLabels": {"env": "prod"}}, {}, False),
        ({"matchExpressions": [expr("env", "In", "dev", "prod")]}, PROD_GPU, True),
        ({"matchExpressions": [expr("env", "In", "dev")]}, PROD_GPU, False),
        ({"matchExpressions": [expr("env", "In", "prod")]}, {}, False),
        ({"matchExpressions": [expr("env", "NotIn", "dev")]}, PROD_GPU, True),
        ({"matchExpressions": [expr("env", "NotIn", "prod")]}, PROD_GPU, False),
        ({"matchExpressions": [expr("env", "NotIn", "prod")]}, {}, True),  # missing key
        ({"matchExpressions": [expr("gpu", "Exists")]}, PROD_GPU, True),
        ({"matchExpressions": [expr("gpu", "Exists")]}, {"gpu": ""}, True),
        ({"matchExpressions": [expr("gpu", "Exists")]}, {"env": "prod"}, False),
        ({"matchExpressions": [expr("gpu", "DoesNotExist")]}, {"env": "prod"}, True),
        ({"matchExpressions": [expr("gpu", "DoesNotExist")]}, PROD_GPU, False),
        (  # matchLabels and every expression must all hold
            {
                "matchLabels": {"env": "prod"},
                "matchExpressions": [expr("gpu", "Exists"), expr("zone", "DoesNotExist")],
            },
            PROD_GPU,
            True,
        ),
        (
            {
                "matchLabels": {"env": "prod"},
                "matchExpressions": [expr("gpu", "Exists"), expr("zone", "DoesNotExist")],
            },
            {**PROD_GPU, "zone": "eu"},
            False,
        ),
        (
            {"matchLabels": {"env": "dev"}, "matchExpressions": [expr("gpu", "Exists")]},
            PROD_GPU,
            False,
        ),
    ],
)
def test_selector_semantics(body: dict[str, Any], labels: dict[str, str], expected: bool) -> None:
    assert selector_matches(selector(**body), labels) is expected


FLEET = [
    cluster("c-m-3", "edge-1", env="dev"),
    cluster("c-m-1", "prod-1", env="prod", gpu="true"),
    cluster("c-m-2", "prod-2", env="prod"),
    cluster("c-m-4", "prod-3", ready=False, env="prod"),
]


def resolve(**targets: Any) -> tuple[list[str], list[tuple[str, str]]]:
    resolution = resolve_targets(Targets.model_validate(targets), FLEET)
    return resolution.cluster_ids, [(s.cluster_id, s.reason) for s in resolution.skipped]


@pytest.mark.parametrize(
    ("targets", "ids", "skipped"),
    [
        ({"clusterIds": ["c-m-2", "c-m-1"]}, ["c-m-1", "c-m-2"], []),
        ({"clusterIds": ["prod-2"]}, ["c-m-2"], []),  # by name
        ({"clusterIds": ["c-m-1", "prod-1"]}, ["c-m-1"], []),  # same cluster twice
        ({"selector": {"matchLabels": {"env": "prod"}}}, ["c-m-1", "c-m-2"], ["c-m-4"]),
        (
            {"selector": {"matchExpressions": [expr("gpu", "Exists")]}, "clusterIds": ["edge-1"]},
            ["c-m-1", "c-m-3"],
            [],
        ),  # union
        (
            {"selector": {"matchLabels": {"env": "prod"}}, "clusterIds": ["c-m-1"]},
            ["c-m-1", "c-m-2"],
            ["c-m-4"],
        ),  # overlap counted once
        ({"clusterIds": ["c-m-9", "c-m-1"]}, ["c-m-1"], ["c-m-9"]),  # unknown id
        ({"clusterIds": ["prod-3"]}, [], ["c-m-4"]),  # not ready, named
        ({"selector": {"matchLabels": {"env": "staging"}}}, [], []),  # matches nothing
    ],
)
def test_resolution(targets: dict[str, Any], ids: list[str], skipped: list[str]) -> None:
    resolved, skips = resolve(**targets)
    assert resolved == ids
    assert [cluster_id for cluster_id, _ in skips] == skipped


def test_skip_reasons_name_the_problem() -> None:
    _, skips = resolve(clusterIds=["c-m-9", "prod-3"])
    assert skips == [
        ("c-m-4", "cluster prod-3 is not ready"),
        ("c-m-9", "no known cluster has this id or name"),
    ]


def test_order_does_not_depend_on_input_order() -> None:
    targets = Targets.model_validate({"selector": {"matchExpressions": [expr("env", "Exists")]}})
    forward = resolve_targets(targets, FLEET)
    backward = resolve_targets(targets, list(reversed(FLEET)))
    assert forward == backward
    assert forward.cluster_ids == ["c-m-1", "c-m-2", "c-m-3"]
    assert forward.skipped == [
        SkippedCluster(cluster_id="c-m-4", reason="cluster prod-3 is not ready")
    ]


def test_id_wins_over_name_and_ambiguous_name_is_skipped() -> None:
    fleet = [cluster("c-m-1", "a"), cluster("a", "b"), cluster("c-m-2", "x"), cluster("c-m-3", "x")]
    resolution = resolve_targets(Targets(cluster_ids=["a", "x"]), fleet)
    assert resolution.cluster_ids == ["a"]
    assert [(s.cluster_id, s.reason) for s in resolution.skipped] == [
        ("x", "name matches several clusters (c-m-2, c-m-3); target one by its id")
    ]
