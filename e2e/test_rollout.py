"""The rollout engine on real API servers with real helm and a real chart repository.

Healthy clusters: dependency waves across two clusters in parallel and idempotence, a
failure skipping exactly its dependents, a foreign release left alone, timeouts, helm's
`modifiedAt` stamp, a chart starting when its own dependencies are deployed, the
operator's and the CLI's releases refusing each other unless forced, and held failures
and deferred clusters making no helm call. Killed helm, dying and departing clusters and
drain are `e2e/test_rollout_recovery.py`; the bed is `e2e.testbed.rollout_engines`.

Each test uses its own namespaces (a per-test prefix) so tests share the session's
clusters without seeing each other's releases.
"""

from __future__ import annotations

import json
import time

import pytest

from e2e.testbed.controlplane import Cluster as BedCluster
from e2e.testbed.helpers import kubectl
from e2e.testbed.rollout_engines import (
    MakeEngine,
    app,
    by_chart,
    engine_fixture,  # noqa: F401  (fixture)
    engines_fixture,  # noqa: F401  (fixture)
    helm,
    ns_fixture,  # noqa: F401  (fixture)
    releases,
    revisions,
    stack,
    two_fixture,  # noqa: F401  (fixture)
)
from herd.engine.engine import Engine
from herd.plan.results import State
from herd.plan.retry import Deferral


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
