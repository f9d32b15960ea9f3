"""The rollout engine on real API servers with real helm and a real chart repository.

Each test uses its own namespaces (a per-test prefix) so tests share the session's
clusters without seeing each other's releases.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from e2e.testbed.chartrepo import helm_binary, helm_list_all
from e2e.testbed.controlplane import Cluster as BedCluster
from e2e.testbed.helpers import kubectl
from herd.api import parse_stack
from herd.api.v1 import Stack
from herd.clusters.files import FileCluster, FileSource
from herd.clusters.inventory import Inventory
from herd.clusters.kubeconfigs import KubeconfigStore
from herd.engine.engine import Engine
from herd.engine.protocols import StackResult
from herd.helm.environment import HelmEnvironment
from herd.plan.ownership import MemoryOwnership
from herd.plan.results import ReleaseResult, State
from herd.plan.retry import Deferral

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


@pytest.fixture(scope="module")
def two(downstream: list[BedCluster]) -> list[BedCluster]:
    return downstream[:2]


MakeEngine = Callable[..., Engine]


@pytest.fixture
async def engines(two: list[BedCluster]) -> AsyncIterator[MakeEngine]:
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


@pytest.fixture
def engine(engines: MakeEngine) -> Engine:
    return engines()


@pytest.fixture
def ns(request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace prefix unique to the test."""
    yield request.node.name.replace("_", "-")[:40].rstrip("-")


def by_chart(result: StackResult, cluster: str) -> dict[str, Any]:
    return {r.chart: r for r in result.releases if r.key.cluster == cluster}


@pytest.mark.helm3
async def test_dag_waves_parallel_clusters_and_idempotence(
    engine: Engine, two: list[BedCluster], chart_repo_url: str, ns: str
) -> None:
    # Two independent roots (a, e) and a diamond a -> b, c -> d.
    charts = [
        app("a", ns, repo=chart_repo_url),
        app("b", ns, "a", repo=chart_repo_url),
        app("c", ns, "a", repo=chart_repo_url),
        app("d", ns, "b", "c", repo=chart_repo_url),
        app("e", ns, repo=chart_repo_url),
    ]
    first = await engine.apply(stack("dag", chart_repo_url, charts))
    assert {r.state for r in first.releases} == {State.DEPLOYED}, first.releases
    assert len(first.releases) == 10
    for cluster in two:
        rows = by_chart(first, cluster.name)
        for child, parent in [("b", "a"), ("c", "a"), ("d", "b"), ("d", "c")]:
            assert rows[child].started >= rows[parent].finished, (child, parent)
        # Independent charts of one wave overlap in time.
        assert rows["b"].started < rows["c"].finished and rows["c"].started < rows["b"].finished
        assert rows["a"].started < rows["e"].finished and rows["e"].started < rows["a"].finished
        deployments = json.loads(kubectl(cluster, "get", "deploy", "-n", ns, "-o", "json"))["items"]
        assert len(deployments) == 5
        for d in deployments:
            assert any(
                c["type"] == "Available" and c["status"] == "True"
                for c in d["status"]["conditions"]
            )
    # The two clusters ran at the same time.
    one, other = (by_chart(first, c.name)["a"] for c in two)
    assert one.started < other.finished and other.started < one.finished

    before = [revisions(c, ns) for c in two]
    second = await engine.apply(stack("dag", chart_repo_url, charts))
    assert {r.state for r in second.releases} == {State.DEPLOYED}
    assert all(r.started is None for r in second.releases), "a no-op pass ran helm"
    assert [revisions(c, ns) for c in two] == before

    # A values change upgrades only the affected release.
    charts[2] = app("c", ns, "a", repo=chart_repo_url, values={"inline": {"message": "new"}})
    third = await engine.apply(stack("dag", chart_repo_url, charts))
    after = [revisions(c, ns) for c in two]
    for old, new in zip(before, after, strict=True):
        assert {k for k in new if new[k] != old[k]} == {f"{ns}/c"}
    assert all(by_chart(third, c.name)["c"].revision == 2 for c in two)

    # A chart removed from the spec is uninstalled; the rest stay.
    fourth = await engine.apply(stack("dag", chart_repo_url, charts[:2] + charts[4:]))
    uninstalled = {
        (r.key.cluster, r.key.name) for r in fourth.releases if r.state is State.UNINSTALLED
    }
    assert uninstalled == {(c.name, n) for c in two for n in ("c", "d")}
    assert set(releases(two[0], ns)) == {"a", "b", "e"}

    gone = await engine.delete("default", "dag")
    assert {r.state for r in gone.releases} == {State.UNINSTALLED}
    assert releases(two[0], ns) == {} and releases(two[1], ns) == {}


async def test_a_failure_skips_exactly_its_dependents(
    engine: Engine, two: list[BedCluster], chart_repo_url: str, ns: str
) -> None:
    charts = [
        app("root", ns, repo=chart_repo_url),
        {
            "name": "bad",
            "chart": "broken",
            "repo": chart_repo_url,
            "version": "0.1.0",
            "namespace": ns,
            "dependsOn": ["root"],
        },
        app("child", ns, "bad", repo=chart_repo_url),
        app("grandchild", ns, "child", repo=chart_repo_url),
        app("sibling", ns, "root", repo=chart_repo_url),
    ]
    result = await engine.apply(stack("failing", chart_repo_url, charts))
    for cluster in two:
        rows = by_chart(result, cluster.name)
        states = {name: r.state for name, r in rows.items()}
        assert states == {
            "root": State.DEPLOYED,
            "bad": State.FAILED,
            "child": State.SKIPPED,
            "grandchild": State.SKIPPED,
            "sibling": State.DEPLOYED,
        }
        assert "broken.mustSet is required" in rows["bad"].message
        assert rows["child"].message == "dependency bad failed"
        assert rows["grandchild"].message == "dependency child skipped"
    await engine.delete("default", "failing")


async def test_foreign_release_is_never_touched(
    engine: Engine, two: list[BedCluster], chart_repo_url: str, ns: str
) -> None:
    helm(
        two[0],
        "install",
        "mine",
        "app",
        "--repo",
        chart_repo_url,
        "--version",
        "0.1.0",
        "-n",
        ns,
        "--create-namespace",
    )
    result = await engine.apply(
        stack("clash", chart_repo_url, [app("mine", ns, repo=chart_repo_url)])
    )
    rows = {r.key.cluster: r for r in result.releases}
    assert rows[two[0].name].state is State.FAILED
    assert "managed by another tool" in rows[two[0].name].message
    assert rows[two[1].name].state is State.DEPLOYED
    assert releases(two[0], ns)["mine"]["revision"] == "1"
    await engine.delete("default", "clash")
    assert "mine" in releases(two[0], ns), "delete removed a release Herd does not own"


@pytest.mark.helm3
async def test_timeout_is_honoured(
    engine: Engine, two: list[BedCluster], chart_repo_url: str, ns: str
) -> None:
    charts = [
        {
            "name": "stuck",
            "chart": "never-ready",
            "repo": chart_repo_url,
            "version": "0.1.0",
            "namespace": ns,
            "wait": True,
            "timeout": "5s",
        }
    ]
    started = time.monotonic()
    result = await engine.apply(stack("slow", chart_repo_url, charts))
    elapsed = time.monotonic() - started
    assert {r.state for r in result.releases} == {State.FAILED}
    assert all(
        "context deadline exceeded" in r.message or "timed out" in r.message
        for r in result.releases
    ), [r.message for r in result.releases]
    assert elapsed < 60
    await engine.delete("default", "slow")


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
    await asyncio.sleep(4)
    old = await engines(stuck_seconds=2).apply(stack("stuck", chart_repo_url, charts))
    row = next(r for r in old.releases if r.key.cluster == target.name)
    assert row.state is State.DEPLOYED, row.message
    assert releases(target, ns)["web"]["status"] == "deployed"
    await engines().delete("default", "stuck")


def helm_labels(cluster: BedCluster, ns: str, name: str) -> dict[str, str]:
    """The labels of the latest revision's helm storage Secret."""
    out = kubectl(cluster, "get", "secret", "-n", ns, "-l", f"owner=helm,name={name}", "-o", "json")
    items = json.loads(out)["items"]
    latest = max(items, key=lambda i: int(i["metadata"]["labels"]["version"]))
    labels: dict[str, str] = latest["metadata"]["labels"]
    return labels


@pytest.mark.helm3
async def test_helm_stamps_when_it_last_changed_a_release(
    engine: Engine, two: list[BedCluster], chart_repo_url: str, ns: str
) -> None:
    """What the stuck check reads: helm 3.17's Secret driver stamps `modifiedAt` (epoch
    seconds) on every write of a revision: its creation (pending-*) and each update."""
    before = int(time.time())
    await engine.apply(stack("stamps", chart_repo_url, [app("web", ns, repo=chart_repo_url)]))
    labels = helm_labels(two[0], ns, "web")
    assert before - 2 <= int(labels["modifiedAt"]) <= time.time() + 2, labels
    assert labels["herd.suse.com/managed-by"] == "operator"
    await engine.delete("default", "stamps")


async def test_a_chart_starts_when_its_own_dependencies_are_deployed(
    engine: Engine, two: list[BedCluster], chart_repo_url: str, ns: str
) -> None:
    """Not when its wave is done: b (after a) starts while a's wave-mate `slow` runs."""
    charts = [
        {**app("slow", ns, repo=chart_repo_url), "chart": "slow", "timeout": "5m"},
        app("a", ns, repo=chart_repo_url),
        app("b", ns, "a", repo=chart_repo_url),
        app("c", ns, "b", repo=chart_repo_url),
    ]
    result = await engine.apply(stack("dagspeed", chart_repo_url, charts))
    assert result.plan is not None
    # waves stay, for display
    assert [set(w) for w in result.plan.waves] == [{"a", "slow"}, {"b"}, {"c"}]
    assert {r.state for r in result.releases} == {State.DEPLOYED}, result.releases
    for cluster in two:
        rows = by_chart(result, cluster.name)
        assert rows["b"].started >= rows["a"].finished
        assert rows["c"].started >= rows["b"].finished
        assert rows["b"].started < rows["slow"].finished, (rows["b"], rows["slow"])
    await engine.delete("default", "dagspeed")


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
        await asyncio.to_thread(dying.stop_apiserver)
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


async def test_operator_and_cli_releases_conflict_unless_forced(
    engines: MakeEngine, two: list[BedCluster], chart_repo_url: str, ns: str
) -> None:
    operator, cli = engines(manager="operator"), engines(manager="cli")
    body = stack("faces", chart_repo_url, [app("web", ns, repo=chart_repo_url)])
    assert {r.state for r in (await operator.apply(body)).releases} == {State.DEPLOYED}
    revision = releases(two[0], ns)["web"]["revision"]

    refused = await cli.apply(body)
    assert {r.state for r in refused.releases} == {State.FAILED}
    assert all(
        r.message.endswith("managed by the Herd operator; use --force to take it over")
        for r in refused.releases
    ), refused.releases
    assert releases(two[0], ns)["web"]["revision"] == revision
    kept = await cli.delete("default", "faces")
    assert State.UNINSTALLED not in {r.state for r in kept.releases}
    assert "web" in releases(two[0], ns)

    forced = await cli.apply(body, force=True)
    assert {r.state for r in forced.releases} == {State.DEPLOYED}, forced.releases
    assert helm_labels(two[0], ns, "web")["herd.suse.com/managed-by"] == "cli"

    back = await operator.apply(body)
    assert {r.state for r in back.releases} == {State.FAILED}
    assert all("managed by herd apply (CLI)" in r.message for r in back.releases)
    await cli.delete("default", "faces")
    assert releases(two[0], ns) == {}


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
    await asyncio.to_thread(first.stop_apiserver)
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


async def test_held_failures_and_deferred_clusters_make_no_helm_call(
    engine: Engine, two: list[BedCluster], chart_repo_url: str, ns: str
) -> None:
    broken = {
        "name": "bad",
        "chart": "broken",
        "repo": chart_repo_url,
        "version": "0.1.0",
        "namespace": ns,
    }
    body = stack("held", chart_repo_url, [broken, app("ok", ns, repo=chart_repo_url)])
    first = await engine.apply(body)
    failed = {r.key: r for r in first.releases if r.chart == "bad"}
    assert {r.state for r in failed.values()} == {State.FAILED}
    assert all(r.config for r in failed.values())
    history = {c.name: helm(c, "history", "bad", "-n", ns, check=False).stdout for c in two}

    held = {key: r.config for key, r in failed.items() if r.config}
    # The second cluster did not answer last time: left alone, its rows say why and when.
    deferral = Deferral(30.0, why="dial tcp: connection refused")
    again = await engine.apply(body, held=held, defer={two[1].name: deferral})
    rows = {(r.key.cluster, r.chart): r for r in again.releases}
    mine = rows[(two[0].name, "bad")]
    assert mine.state is State.FAILED and mine.held and mine.started is None
    assert mine.message == "not retried: last attempt with this configuration failed"
    assert rows[(two[0].name, "ok")].state is State.DEPLOYED
    for chart in ("bad", "ok"):
        deferred = rows[(two[1].name, chart)]
        assert deferred.state is State.UNREACHABLE and deferred.transient
        assert deferred.message == "retrying in 30s: dial tcp: connection refused"
    assert two[1].name in again.holding and two[1].name in again.unreachable
    assert {c.name: helm(c, "history", "bad", "-n", ns, check=False).stdout for c in two} == (
        history
    )
    await engine.delete("default", "held")


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


async def engines_cleanup(two: list[BedCluster], ns: str) -> None:
    """Remove by hand what a drained engine (which starts no helm any more) left."""
    for cluster in two:
        for name in releases(cluster, ns):
            await asyncio.to_thread(helm, cluster, "uninstall", name, "-n", ns, check=False)
