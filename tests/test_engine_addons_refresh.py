"""The engine reads the add-on configuration only for a Stack that enables an add-on: a
no-op pass of a plain Stack costs no ConfigMap or Secret read (issue 16's call budget)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from herd.api.charts import ChartSpec
from herd.api.v1 import Stack, StackSpec
from herd.engine.engine import Engine
from herd.helm.environment import HelmEnvironment
from herd.plan.clusters import Cluster
from herd.plan.releases import Values


class CountingAddOns:
    def __init__(self) -> None:
        self.refreshes = 0

    async def refresh(self) -> None:
        self.refreshes += 1

    def charts(self, spec: StackSpec) -> list[ChartSpec]:
        return []

    def stack_charts(self, stack: Stack) -> list[ChartSpec]:
        return []

    def cluster_values(self, cluster: Cluster, chart: ChartSpec) -> Values:
        return {}


class NoInventory:
    async def clusters(self) -> list[Cluster]:
        return []

    async def kubeconfig(self, cluster: Cluster) -> Path:
        raise AssertionError("not reached")


def stack(**extra: Any) -> Stack:
    spec = StackSpec.model_validate(
        {
            "targets": {"clusterIds": ["c-1"]},
            "charts": [{"name": "db", "repo": "https://r", "version": "1.0.0", "namespace": "db"}],
            **extra,
        }
    )
    return Stack(
        apiVersion="herd.suse.com/v1",
        kind="Stack",
        metadata={"namespace": "a", "name": "s"},
        spec=spec,
    )


@pytest.mark.parametrize(
    ("extra", "refreshes"),
    [
        ({}, 0),
        ({"security": "disabled", "observability": "disabled"}, 0),
        ({"security": "enabled"}, 1),
        ({"observability": "enabled"}, 1),
    ],
)
def test_addon_configuration_is_read_only_when_an_addon_is_enabled(
    extra: dict[str, str], refreshes: int
) -> None:
    addons = CountingAddOns()
    env = HelmEnvironment()
    try:
        engine = Engine(NoInventory(), env, addons=addons)
        asyncio.run(engine.plan(stack(**extra)))
    finally:
        env.close()
    assert addons.refreshes == refreshes
