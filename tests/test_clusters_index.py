"""Following the fleet: which Stacks a cluster change affects."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from herd.api import Targets
from herd.operator.index import TargetIndex
from herd.plan.clusters import Cluster, KubeconfigRef


def cluster(
    cluster_id: str = "c-m-1", ready: bool = True, version: str = "1", **labels: str
) -> Cluster:
    return Cluster(
        id=cluster_id,
        name="prod-1",
        labels=labels,
        ready=ready,
        source="rancher",
        kubeconfig=KubeconfigRef.secret("fleet-default", "prod-1-kubeconfig", "value", version),
    )


PROD = ("apps", "prod")
GPU = ("apps", "gpu")
BY_ID = ("apps", "by-id")
BY_NAME = ("apps", "by-name")
OTHER = ("apps", "other")


@pytest.fixture
def index() -> TargetIndex:
    index = TargetIndex()
    index.set(PROD, Targets.model_validate({"selector": {"matchLabels": {"env": "prod"}}}))
    index.set(
        GPU,
        Targets.model_validate(
            {"selector": {"matchExpressions": [{"key": "gpu", "operator": "Exists"}]}}
        ),
    )
    index.set(BY_ID, Targets(cluster_ids=["c-m-1"]))
    index.set(BY_NAME, Targets(cluster_ids=["prod-1"]))
    index.set(OTHER, Targets(cluster_ids=["c-m-9"]))
    return index


def replaced(base: Cluster, **changes: Any) -> Cluster:
    return dataclasses.replace(base, **changes)


BASE = cluster(env="prod")


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        (None, BASE, {PROD, BY_ID, BY_NAME}),  # appears
        (BASE, None, {PROD, BY_ID, BY_NAME}),  # disappears
        (None, cluster(ready=False, env="prod"), {PROD, BY_ID, BY_NAME}),  # appears not ready
        (BASE, replaced(BASE, labels={"env": "dev"}), {PROD}),  # stops matching
        (BASE, replaced(BASE, labels={"env": "prod", "gpu": "1"}), {GPU}),  # starts matching
        (BASE, replaced(BASE, labels={"env": "prod", "team": "x"}), set()),  # same matches
        (BASE, replaced(BASE, ready=False), {PROD, BY_ID, BY_NAME}),  # becomes not ready
        (cluster(ready=False, env="prod"), BASE, {PROD, BY_ID, BY_NAME}),  # becomes ready
        (BASE, cluster(env="prod", version="2"), {PROD, BY_ID, BY_NAME}),  # rotation
        (BASE, cluster(env="prod"), set()),  # nothing changed
        (BASE, replaced(BASE, id="c-m-9"), {PROD, BY_ID, BY_NAME, OTHER}),  # id assigned
        (cluster(env="dev"), cluster(env="dev", version="2"), {BY_ID, BY_NAME}),
        (None, None, set()),
    ],
)
def test_affected(
    index: TargetIndex, before: Cluster | None, after: Cluster | None, expected: set[Any]
) -> None:
    assert index.affected(before, after) == expected


def test_set_replaces_and_remove_forgets(index: TargetIndex) -> None:
    index.set(PROD, Targets(cluster_ids=["c-m-7"]))
    index.remove(BY_ID)
    index.remove(("apps", "never-set"))
    assert index.affected(None, BASE) == {BY_NAME}
    assert index.get(BY_ID) is None
    assert len(index) == 4


def test_targeting_ignores_readiness(index: TargetIndex) -> None:
    assert index.targeting(cluster(ready=False, gpu="true")) == {GPU, BY_ID, BY_NAME}


def test_a_relabel_wakes_stacks_whose_values_follow_cluster_facts() -> None:
    index = TargetIndex()
    targets = Targets.model_validate({"selector": {"matchLabels": {"env": "prod"}}})
    index.set(("apps", "plain"), targets)
    index.set(("apps", "templated"), targets, facts=True)
    before, after = cluster(env="prod", zone="a"), cluster(env="prod", zone="b")
    assert index.affected(before, after) == {("apps", "templated")}
    renamed = dataclasses.replace(before, name="prod-one")
    assert index.affected(before, renamed) == {("apps", "templated")}
    assert index.affected(before, before) == set()
    index.set(("apps", "templated"), targets)  # values no longer follow facts
    assert index.affected(before, after) == set()
