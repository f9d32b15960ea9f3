"""A drift correction is an ordinary write: in a staged Stack it goes stage by stage.

Through `Engine.apply` in-process on two test-bed clusters (stage `one`: the first, the
implicit last stage: the second), a Stack of the `app` chart in Correct mode with a 1 s
drift interval. Both clusters' ConfigMaps are deleted; a pass that writes only stage
`one` (`herd apply --stage one`) re-creates the first cluster's and only reports the
second's, which a full pass then corrects, after stage `one`'s. Suspend: `e2e/test_drift.py`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from e2e.testbed.controlplane import Cluster as BedCluster
from e2e.testbed.helpers import kubectl
from herd.api import parse_stack
from herd.api.v1 import Stack
from herd.clusters.drift import DriftMemory
from herd.clusters.files import FileCluster, FileSource
from herd.clusters.inventory import Inventory
from herd.clusters.kubeconfigs import KubeconfigStore
from herd.engine.engine import Engine
from herd.engine.protocols import StackResult
from herd.helm.environment import HelmEnvironment
from herd.plan.drift import ReleaseDrift
from herd.plan.results import State
from herd.rollout.staged import StageInputs

NS, APP = "stage-drift", "staged"
DUE = 1.5  # seconds: past the 1 s interval, every release's check is due


@pytest.fixture
async def engine(downstream: list[BedCluster]) -> AsyncIterator[Engine]:
    entries = [
        FileCluster(c.name, c.kubeconfig, labels={"drift": "staged"}) for c in downstream[:2]
    ]
    env = HelmEnvironment()
    with KubeconfigStore(None) as store:
        yield Engine(Inventory([FileSource(entries)], store), env, drift=DriftMemory())
    env.close()


def staged(repo: str, first: str) -> Stack:
    chart = {"name": APP, "chart": "app", "repo": repo, "version": "0.1.0", "namespace": NS}
    spec: dict[str, Any] = {
        "targets": {"selector": {"matchLabels": {"drift": "staged"}}},
        "charts": [chart],
        "rollout": {"stages": [{"name": "one", "clusterIds": [first]}]},
        "drift": {"mode": "Correct", "interval": "1s"},
    }
    body = {"apiVersion": "herd.suse.com/v1", "kind": "Stack", "spec": spec}
    body["metadata"] = {"name": "drift-staged", "namespace": "default"}
    return parse_stack(body)


def configmap(cluster: BedCluster) -> str:
    return kubectl(cluster.kubeconfig, "get", "configmap", APP, "-n", NS, check=False)


def drift_of(result: StackResult, cluster: BedCluster) -> ReleaseDrift | None:
    return next(r.drift for r in result.releases if r.key.cluster == cluster.name)


async def test_a_staged_stack_corrects_stage_by_stage(
    engine: Engine, downstream: list[BedCluster], chart_repo_url: str
) -> None:
    first, second = downstream[:2]
    stack = staged(chart_repo_url, first.name)
    try:
        deployed = await engine.apply(stack)
        assert {r.state for r in deployed.releases} == {State.DEPLOYED}, deployed.releases
        for cluster in (first, second):
            kubectl(cluster.kubeconfig, "delete", "configmap", APP, "-n", NS)
        await asyncio.sleep(DUE)

        held = await engine.apply(stack, staging=StageInputs(only="one"))

        assert configmap(first), "stage one's drift is corrected"
        assert not configmap(second), "a stage not written is not corrected"
        ahead, behind = drift_of(held, first), drift_of(held, second)
        assert ahead is not None and ahead.corrected == 1 and ahead.count == 0, ahead
        assert behind is not None and behind.entries() == [f"ConfigMap/{APP}: missing"], behind
        assert behind.corrected == 0
        await asyncio.sleep(DUE)

        full = await engine.apply(stack)

        assert configmap(second), "corrected once its stage is written"
        ahead, behind = drift_of(full, first), drift_of(full, second)
        assert behind is not None and behind.corrected == 1 and behind.count == 0, behind
        assert ahead is not None and ahead.corrected_at is not None
        assert behind.corrected_at is not None and ahead.corrected_at <= behind.corrected_at
    finally:
        for cluster in (first, second):
            kubectl(cluster.kubeconfig, "delete", "namespace", NS, "--wait=false", check=False)
