"""The rollout engine when things break, on real API servers with real helm.

A pending release left by a SIGKILLed helm (young: left alone; old: recovered), an API
server killed mid-rollout (the other cluster ends Deployed, apply never raises), a cluster
that departs while down (cleaned up when it returns), and drain (running helm finishes,
nothing new starts). The healthy-cluster cases are `e2e/test_rollout.py`; the bed is
`e2e.testbed.rollout_engines`.

Each test uses its own namespaces (a per-test prefix) so tests share the session's
clusters without seeing each other's releases.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time

import pytest

from e2e.testbed import outage
from e2e.testbed.controlplane import Cluster as BedCluster
from e2e.testbed.rollout_engines import (
    HELM,
    MakeEngine,
    app,
    by_chart,
    engine_fixture,  # noqa: F401  (fixture)
    engines_cleanup,
    engines_fixture,  # noqa: F401  (fixture)
    helm,
    ns_fixture,  # noqa: F401  (fixture)
    releases,
    stack,
    two_fixture,  # noqa: F401  (fixture)
)
from herd.engine.engine import Engine
from herd.plan.results import ReleaseResult, State


def kill_mid_upgrade(target: BedCluster, repo: str, ns: str) -> None:
    """An upgrade (helm keeps the release's labels, so it stays Herd's) that waits on pods
    that never come, SIGKILLed mid-way: the release is left pending-upgrade."""
    proc = subprocess.Popen(
        [
            HELM,
            "--kubeconfig",
            str(target.kubeconfig),
            "upgrade",
            "web",
            "qdrant",
            "--repo",
            repo,
            "--version",
            "0.7.4",
            "-n",
            ns,
            "--wait",
            "--timeout",
            "5m",
            "--set-string",
            "nodeSelector.herd\\.test/never=true",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if releases(target, ns).get("web", {}).get("status") == "pending-upgrade":
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    _, stderr = proc.communicate()
    assert releases(target, ns)["web"]["status"] == "pending-upgrade", stderr


@pytest.mark.helm3
async def test_young_pending_is_left_alone_and_an_old_one_is_recovered(
    engines: MakeEngine, two: list[BedCluster], chart_repo_url: str, ns: str
) -> None:
    charts = [app("web", ns, chart="qdrant", version="0.7.4", repo=chart_repo_url)]
    first = await engines().apply(stack("stuck", chart_repo_url, charts))
    assert {r.state for r in first.releases} == {State.DEPLOYED}, first.releases
    target = two[0]
    await asyncio.to_thread(kill_mid_upgrade, target, chart_repo_url, ns)
    killed = time.monotonic()  # helm stamped the pending revision before this
    pending_revision = releases(target, ns)["web"]["revision"]

    # Younger than its timeout (2m) + 60 s: a live actor may own it. No helm call.
    young = await engines(stuck_seconds=60).apply(stack("stuck", chart_repo_url, charts))
    row = next(r for r in young.releases if r.key.cluster == target.name)
    assert row.state is State.PENDING and row.transient, row
    assert row.message.startswith("operation in progress elsewhere, "), row.message
    assert row.message.split(", ")[1].endswith(" s old (pending-upgrade)"), row.message
    assert releases(target, ns)["web"]["status"] == "pending-upgrade"
    assert releases(target, ns)["web"]["revision"] == pending_revision
    assert target.name in young.holding
    other = next(r for r in young.releases if r.key.cluster == two[1].name)
    assert other.state is State.DEPLOYED

    # The same release, older than timeout (1s) + stuck_seconds (2): recovered.
    charts[0]["timeout"] = "1s"  # not part of the config digest: no upgrade because of it
    await asyncio.sleep(max(0.0, killed + 4 - time.monotonic()))  # 4 s old, at least
    old = await engines(stuck_seconds=2).apply(stack("stuck", chart_repo_url, charts))
    row = next(r for r in old.releases if r.key.cluster == target.name)
    assert row.state is State.DEPLOYED, row.message
    assert releases(target, ns)["web"]["status"] == "deployed"
    await engines().delete("default", "stuck")


async def test_a_cluster_dying_mid_rollout_leaves_the_other_deployed(
    engine: Engine, two: list[BedCluster], chart_repo_url: str, ns: str
) -> None:
    """A killed apiserver on one cluster, and an on_progress that always raises: the
    other cluster's releases all end Deployed; apply returns, never raises."""
    charts = [
        {**app("slow", ns, repo=chart_repo_url), "chart": "slow", "timeout": "1m"},
        app("a", ns, repo=chart_repo_url, timeout="1m"),
        app("b", ns, "a", repo=chart_repo_url, timeout="1m"),
    ]
    dying, healthy = two
    deploying = asyncio.Event()
    calls = 0

    def progress(result: ReleaseResult) -> None:
        nonlocal calls
        calls += 1
        if result.key.cluster == dying.name and result.state is State.DEPLOYING:
            deploying.set()
        raise RuntimeError("status writer is down")

    rollout = asyncio.create_task(engine.apply(stack("dying", chart_repo_url, charts), progress))
    try:
        await asyncio.wait_for(deploying.wait(), 120)
        await asyncio.to_thread(outage.stop_apiserver, dying)
        result = await asyncio.wait_for(rollout, 240)
    finally:
        if not rollout.done():
            rollout.cancel()
        if not dying.apiserver.running():
            await asyncio.to_thread(dying.start_apiserver)
    assert calls > 0
    assert {r.state for r in by_chart(result, healthy.name).values()} == {State.DEPLOYED}
    lost = by_chart(result, dying.name)
    assert lost["slow"].state is not State.DEPLOYED, lost["slow"]
    for row in lost.values():
        assert row.state in (State.DEPLOYED, State.FAILED, State.SKIPPED, State.UNREACHABLE)
        if row.state is State.FAILED:
            assert row.transient, row
    assert dying.name in result.holding
    await engine.delete("default", "dying")
    assert releases(healthy, ns) == {}
    # helm, cut off mid-install, may have left a pending-install behind: younger than its
    # timeout, Herd rightly leaves it alone. Clean up by hand.
    for name in releases(dying, ns):
        helm(dying, "uninstall", name, "-n", ns, "--no-hooks", check=False)


async def test_a_cluster_that_departs_while_down_is_cleaned_up_when_it_returns(
    engines: MakeEngine, two: list[BedCluster], chart_repo_url: str, ns: str
) -> None:
    first, second = two
    body = stack("departs", chart_repo_url, [app("web", ns, repo=chart_repo_url)])
    deployed = await engines().apply(body)
    assert {r.state for r in deployed.releases} == {State.DEPLOYED}
    assert deployed.holding == {first.name, second.name}
    # `first` stops matching the selector while its API server is down.
    narrowed = stack(
        "departs",
        chart_repo_url,
        [app("web", ns, repo=chart_repo_url)],
        targets={"clusterIds": [second.name]},
    )
    await asyncio.to_thread(outage.stop_apiserver, first)
    try:
        away = await engines().apply(narrowed, previous_targets=deployed.holding)
    finally:
        await asyncio.to_thread(first.start_apiserver)
    assert first.name in away.unreachable, away.unreachable
    assert first.name in away.holding  # remembered: it may still hold `web`
    assert releases(first, ns)["web"]["status"] == "deployed"

    back = await engines().apply(narrowed, previous_targets=away.holding)
    assert releases(first, ns) == {}
    assert back.holding == {second.name}
    assert [r.state for r in back.releases if r.key.cluster == first.name] == [State.UNINSTALLED]

    # Deletion limited to the clusters the record names.
    gone = await engines().delete("default", "departs", only=back.holding)
    assert {r.key.cluster for r in gone.releases} == {second.name}
    assert gone.holding == frozenset()
    assert releases(second, ns) == {}


async def test_drain_lets_running_helm_finish_and_starts_nothing_new(
    engine: Engine, two: list[BedCluster], chart_repo_url: str, ns: str
) -> None:
    charts = [app("first", ns, repo=chart_repo_url), app("then", ns, "first", repo=chart_repo_url)]
    running = asyncio.Event()

    def progress(result: ReleaseResult) -> None:
        if result.chart == "first" and result.state is State.DEPLOYING:
            running.set()

    rollout = asyncio.create_task(engine.apply(stack("drain", chart_repo_url, charts), progress))
    await asyncio.wait_for(running.wait(), 120)
    engine.gates.drain()
    assert engine.gates.draining
    await asyncio.wait_for(engine.gates.idle(), 180)
    result = await asyncio.wait_for(rollout, 60)
    rows = {(r.key.cluster, r.chart): r for r in result.releases}
    started = [c.name for c in two if rows[(c.name, "first")].state is State.DEPLOYED]
    assert started, "the helm operation running at drain time was not let finish"
    for cluster in two:
        after = rows[(cluster.name, "then")]
        if cluster.name in started:
            assert after.state is State.PENDING and after.transient, after
            assert after.message == "controller shutting down"
        else:  # its own dependency was drained before it started
            assert after.message == "dependency first pending", after
        assert "then" not in releases(cluster, ns)
    await engines_cleanup(two, ns)
