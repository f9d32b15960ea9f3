"""The rollout engine's e2e bed: engines on two clusters, a Stack of fixture charts, helm.

Shared by `e2e/test_rollout.py` (the engine on healthy clusters) and
`e2e/test_rollout_recovery.py` (killed helm, dying and departing clusters, drain). The
fixtures are named with `name=` so a module imports them once (`# noqa: F401`) without
its tests' parameters shadowing the import: `two` (two downstream clusters), `engines`
(a factory of engines sharing one kubeconfig store, helm home and ownership record),
`engine`, and `ns` (a namespace prefix unique to the test).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from e2e.testbed.chartrepo import helm_binary, helm_list_all
from e2e.testbed.controlplane import Cluster as BedCluster
from herd.api import parse_stack
from herd.api.v1 import Stack
from herd.clusters.files import FileCluster, FileSource
from herd.clusters.inventory import Inventory
from herd.clusters.kubeconfigs import KubeconfigStore
from herd.engine.engine import Engine
from herd.engine.protocols import StackResult
from herd.helm.environment import HelmEnvironment
from herd.plan.ownership import MemoryOwnership

HELM = helm_binary()  # the lane's helm: e2e/conftest.py sets HERD_HELM before collection


def helm(cluster: BedCluster, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [HELM, "--kubeconfig", str(cluster.kubeconfig), *args],
        capture_output=True,
        text=True,
        check=check,
        timeout=300,
    )


def releases(cluster: BedCluster, namespace: str) -> dict[str, dict[str, Any]]:
    """`helm list` (every status) of one namespace, by release name."""
    out = helm(cluster, *helm_list_all(), "-n", namespace, "-o", "json").stdout
    return {r["name"]: r for r in json.loads(out)}


def revisions(cluster: BedCluster, *namespaces: str) -> dict[str, int]:
    return {
        f"{ns}/{name}": int(r["revision"])
        for ns in namespaces
        for name, r in releases(cluster, ns).items()
    }


def stack(name: str, repo: str, charts: list[dict[str, Any]], **spec: Any) -> Stack:
    return parse_stack(
        {
            "apiVersion": "herd.suse.com/v1",
            "kind": "Stack",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {
                "targets": {"selector": {"matchLabels": {"e2e": "yes"}}},
                "charts": charts,
                **spec,
            },
        }
    )


def app(name: str, namespace: str, *depends: str, **fields: Any) -> dict[str, Any]:
    return {
        "name": name,
        "chart": "app",
        "version": "0.1.0",
        "namespace": namespace,
        "dependsOn": list(depends),
        "wait": True,
        "timeout": "2m",
        **fields,
    }


@pytest.fixture(scope="module", name="two")
def two_fixture(downstream: list[BedCluster]) -> list[BedCluster]:
    return downstream[:2]


MakeEngine = Callable[..., Engine]


@pytest.fixture(name="engines")
async def engines_fixture(two: list[BedCluster]) -> AsyncIterator[MakeEngine]:
    """Engines on the two clusters, sharing one kubeconfig store and helm home; keyword
    arguments go to `Engine` (manager, stuck_seconds, ...)."""
    entries = [FileCluster(c.name, c.kubeconfig, labels={"e2e": "yes"}) for c in two]
    store = KubeconfigStore(None)
    env = HelmEnvironment()
    inventory = Inventory([FileSource(entries)], store)
    # One ownership record for every engine of a test: a release one engine installed is
    # recorded, so another engine (a restarted process) may remove it (herd.plan.ownership).
    owned = MemoryOwnership()
    try:
        yield lambda **options: Engine(inventory, env, **{"ownership": owned, **options})
    finally:
        store.close()
        env.close()


@pytest.fixture(name="engine")
def engine_fixture(engines: MakeEngine) -> Engine:
    return engines()


@pytest.fixture(name="ns")
def ns_fixture(request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace prefix unique to the test."""
    yield request.node.name.replace("_", "-")[:40].rstrip("-")


def by_chart(result: StackResult, cluster: str) -> dict[str, Any]:
    return {r.chart: r for r in result.releases if r.key.cluster == cluster}


async def engines_cleanup(two: list[BedCluster], ns: str) -> None:
    """Remove by hand what a drained engine (which starts no helm any more) left."""
    for cluster in two:
        for name in releases(cluster, ns):
            await asyncio.to_thread(helm, cluster, "uninstall", name, "-n", ns, check=False)
