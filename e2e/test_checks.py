"""Health gates of a staged rollout on three downstream control planes (real helm, real
API servers, kwok playing the kubelet).

- A canary whose pod stops being Ready after helm's `--wait` returned (a status change on
  the real API server) fails its soak: the rollout halts naming the check and the cluster,
  well before the soak would have ended, and prod is never written.
- A failing `helm test` (the fixture chart's test pod ends Failed) fails the canary and
  halts; once it passes, the rollout completes.
- `checks.security` holds the canary while the NeuVector stand-in reports a critical
  vulnerability for its image, and passes once a rescan reports none.
- A metric above its threshold halts: the canary's real Prometheus (`prometheus_fleet`)
  scrapes the test bed's exporter, whose error rate the test raises during the soak.
- While a canary soaks, the status the pass offers (the keeper's `Progress`) follows the
  security check: a hold appears and clears, and `status.security.criticalIssues` counts
  what the check read, within a round of each rescan.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from e2e.test_addons import (
    APP_OLD,
    FleetInventory,
    addons,
    expose_standin,
    remove_standin,
)
from e2e.test_addons import fleet as fleet  # noqa: PLC0414 (a fixture, shared)
from e2e.test_addons import standin as standin  # noqa: PLC0414 (a fixture, shared)
from e2e.testbed import prometheus as bed_prometheus
from e2e.testbed.controlplane import Cluster as BedCluster
from e2e.testbed.helpers import kubectl
from e2e.testbed.neuvector_child import StandInProcess
from e2e.testbed.neuvector_standin import CannedImage
from herd.addons.probe import AddonProbe
from herd.api import parse_stack
from herd.api.status import RolloutStatus, StackStatus
from herd.api.v1 import Stack
from herd.clusters.readiness import ReadinessReader
from herd.engine.checks import LiveProbe
from herd.engine.engine import Engine, StackResult
from herd.helm.environment import HelmEnvironment
from herd.operator.events import StackEvents
from herd.operator.progress import Progress
from herd.plan.results import State
from herd.rollout.staged import StageInputs

CANARY, PROD = "c-m-gpu01", "c-m-gpu02"
NV_NS = "cattle-neuvector-system"


@pytest.fixture
async def env() -> AsyncIterator[HelmEnvironment]:
    helm = HelmEnvironment()
    yield helm
    helm.close()


def staged_stack(
    name: str, charts: list[dict[str, Any]], canary: dict[str, Any], **spec: Any
) -> Stack:
    return parse_stack(
        {
            "apiVersion": "herd.suse.com/v1",
            "kind": "Stack",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {
                "targets": {"clusterIds": [CANARY, PROD]},
                "rollout": {
                    "stages": [
                        {"name": "canary", "clusterIds": [CANARY], **canary},
                        {"name": "prod", "clusterIds": [PROD]},
                    ]
                },
                "charts": charts,
                **spec,
            },
        }
    )


def deployments(fleet: FleetInventory, cluster: str, ns: str) -> list[str]:
    out = kubectl(fleet.beds[cluster], "get", "deploy", "-n", ns, "-o", "name", check=False)
    return out.split()


async def soaking(engine: Engine, stack: Stack) -> asyncio.Task[StackResult]:
    """`engine.apply(stack)` started, once its canary stage soaks (its checks passed once)."""
    paused = asyncio.Event()

    def on_stage(status: RolloutStatus) -> None:
        if status.state == "Paused":
            paused.set()

    task = asyncio.create_task(engine.apply(stack, staging=StageInputs(on_stage=on_stage)))
    await asyncio.wait_for(paused.wait(), 180)
    return task


async def make_unready(fleet: FleetInventory, cluster: str, ns: str) -> None:
    """The canary's pod stops being Ready: its status, patched on the real API server (kwok
    only readies Pending pods, so it stays so; the controllers update the Deployment)."""
    bed = fleet.beds[cluster]
    pod = await asyncio.to_thread(
        kubectl, bed, "get", "pods", "-n", ns, "-o", "jsonpath={.items[0].metadata.name}"
    )
    unready = [
        {"type": "Ready", "status": "False", "reason": "ContainersNotReady"},
        {"type": "ContainersReady", "status": "False", "reason": "ContainersNotReady"},
    ]
    patch = json.dumps({"status": {"conditions": unready}})
    await asyncio.to_thread(
        kubectl, bed, "patch", "pod", pod, "-n", ns, "--subresource=status",
        "--type=merge", "-p", patch,
    )  # fmt: skip


async def test_pods_unready_after_wait_fail_the_canary_soak(
    fleet: FleetInventory, env: HelmEnvironment, chart_repo_url: str
) -> None:
    ns = f"checks-ready-{uuid.uuid4().hex[:6]}"
    chart = {"name": "web", "chart": "app", "repo": chart_repo_url, "version": "0.1.0"}
    stack = staged_stack(
        ns, [{**chart, "namespace": ns, "wait": True}], {"pause": "90s", "checks": {}}
    )
    engine = Engine(fleet, env)
    try:
        task = await soaking(engine, stack)
        assert deployments(fleet, PROD, ns) == []
        await make_unready(fleet, CANARY, ns)
        broke = time.monotonic()
        result = await asyncio.wait_for(task, 120)
        took = time.monotonic() - broke
        assert result.rollout is not None
        status = result.rollout.status
        assert status.state == "Halted", status
        assert f"cluster {CANARY}: check readiness: release {ns}/web:" in status.message
        assert "is InProgress" in status.message
        assert took < 45, took  # the soak is 90 s: the check, not the pause, ended it
        canary = status.stages[0]
        assert [f.cluster_id for f in canary.failed_checks] == [CANARY]
        assert canary.succeeded_at is None
        assert deployments(fleet, PROD, ns) == []  # prod never written
    finally:
        await engine.delete(stack.namespace, stack.name)


async def test_a_failing_helm_test_halts_and_a_passing_one_completes(
    fleet: FleetInventory, env: HelmEnvironment, chart_repo_url: str
) -> None:
    ns = f"checks-test-{uuid.uuid4().hex[:6]}"
    chart = {
        "name": "web",
        "chart": "with-test",
        "repo": chart_repo_url,
        "version": "0.1.0",
        "namespace": ns,
        "test": {"enabled": True, "timeout": "1m"},
    }
    failing = {**chart, "values": {"inline": {"test": {"outcome": "Failed"}}}}
    engine = Engine(fleet, env)
    stack = staged_stack(ns, [failing], {})
    try:
        result = await engine.apply(stack)
        rows = {r.key.cluster: r for r in result.releases}
        assert rows[CANARY].state is State.FAILED, rows[CANARY]
        assert rows[CANARY].message.startswith("helm test failed: "), rows[CANARY].message
        assert len(rows[CANARY].message) <= 420
        assert not rows[CANARY].transient  # held for this config
        assert result.rollout is not None and result.rollout.status.state == "Halted"
        assert deployments(fleet, PROD, ns) == []
        phase = kubectl(
            fleet.beds[CANARY], "get", "pod", "web-test", "-n", ns, "-o", "jsonpath={.status.phase}"
        )
        assert phase == "Failed"

        passing = {**chart, "values": {"inline": {"test": {"outcome": "Succeeded"}}}}
        result = await engine.apply(staged_stack(ns, [passing], {}))
        assert {r.key.cluster: r.state for r in result.releases} == {
            CANARY: State.DEPLOYED,
            PROD: State.DEPLOYED,
        }
        assert result.rollout is not None and result.rollout.status.state == "Complete"
    finally:
        await engine.delete(stack.namespace, stack.name)


async def test_security_check_holds_the_canary_until_the_image_is_clean(
    fleet: FleetInventory,
    env: HelmEnvironment,
    chart_repo_url: str,
    standin: StandInProcess,
) -> None:
    ns = f"checks-sec-{uuid.uuid4().hex[:6]}"
    config = addons(chart_repo_url, **{"neuvector.apiService": "https:herd-nv-standin:10443"})
    probe = LiveProbe(ReadinessReader(env), scans=AddonProbe(config.catalog, env))
    engine = Engine(fleet, env, addons=config.catalog, checks=probe)
    chart = {"name": "web", "chart": "app", "repo": chart_repo_url, "version": "0.1.0"}
    canary = {"checks": {"security": {"failOn": "Critical", "pendingTimeout": "10m"}}}
    stack = staged_stack(ns, [{**chart, "namespace": ns}], canary, security="enabled")
    try:
        result = await engine.apply(stack)  # NeuVector not reachable yet: held, not failed
        assert result.rollout is not None
        status = result.rollout.status
        assert status.state == "Progressing", status
        assert [h.cluster_id for h in status.stages[0].held_checks] == [CANARY]
        assert deployments(fleet, PROD, ns) == []

        expose_standin(fleet.beds[CANARY], NV_NS, standin)
        result = await engine.apply(stack)
        assert result.rollout is not None
        status = result.rollout.status
        assert status.state == "Progressing", status
        held = status.stages[0].held_checks
        assert [(h.cluster_id, h.message) for h in held] == [
            (CANARY, f"check security: image {APP_OLD} has critical vulnerabilities")
        ]
        assert "1 held by checks" in status.message
        assert deployments(fleet, PROD, ns) == []

        standin.rescan_image(CannedImage(APP_OLD, medium=3))  # no critical one any more
        result = await engine.apply(stack)
        assert result.rollout is not None
        assert result.rollout.status.state == "Complete", result.rollout.status
        assert deployments(fleet, PROD, ns) == ["deployment.apps/web"]
    finally:
        standin.rescan_image(CannedImage(APP_OLD, critical=1, high=2, medium=3))
        remove_standin(fleet.beds[CANARY], NV_NS)
        await engine.delete(stack.namespace, stack.name)


ERROR_RATIO = (
    'sum(rate(http_requests_total{code=~"5..",cluster="{{ .Cluster.Name }}"}[10s]))'
    ' / sum(rate(http_requests_total{cluster="{{ .Cluster.Name }}"}[10s]))'
)


async def test_a_metric_above_its_threshold_halts_the_canary(
    downstream: list[BedCluster],
    env: HelmEnvironment,
    chart_repo_url: str,
    prometheus_fleet: dict[str, bed_prometheus.Monitored],
) -> None:
    ns = f"checks-metric-{uuid.uuid4().hex[:6]}"
    monitored = prometheus_fleet[downstream[0].name]
    monitored.exporter.set(rates={"200": 40, "500": 0})
    fleet = FleetInventory(downstream)  # the canary's Prometheus from its URL annotation
    canary_cluster = fleet.clusters_by_id[CANARY]
    fleet.clusters_by_id[CANARY] = dataclasses.replace(
        canary_cluster, name=downstream[0].name, prometheus_url=monitored.url
    )
    ratio = ERROR_RATIO.replace("{{ .Cluster.Name }}", downstream[0].name)
    await asyncio.to_thread(bed_prometheus.wait_for_value, monitored.url, ratio, lambda v: v == 0)
    error_rate = {
        "name": "error-rate",
        "query": ERROR_RATIO,  # {{ .Cluster.Name }}: the exporter's cluster label
        "threshold": {"max": 0.1},
        "interval": "2s",
        "failureLimit": 2,
    }
    chart = {"name": "web", "chart": "app", "repo": chart_repo_url, "version": "0.1.0"}
    canary = {"pause": "120s", "checks": {"readiness": False, "metrics": [error_rate]}}
    stack = staged_stack(ns, [{**chart, "namespace": ns}], canary)
    engine = Engine(fleet, env)
    try:
        task = await soaking(engine, stack)  # the first evaluations passed: ratio 0
        monitored.exporter.set(rates={"200": 20, "500": 20})  # half the requests fail
        breached = time.monotonic()
        result = await asyncio.wait_for(task, 120)
        took = time.monotonic() - breached
        assert result.rollout is not None
        status = result.rollout.status
        assert status.state == "Halted", status
        assert f"cluster {CANARY}: check error-rate: " in status.message
        assert "is above max 0.1 (2 failed evaluations)" in status.message
        assert took < 60, took  # the soak is 120 s
        assert [f.cluster_id for f in status.stages[0].failed_checks] == [CANARY]
        assert deployments(fleet, PROD, ns) == []
    finally:
        monitored.exporter.set(rates={"200": 40, "500": 0})
        await engine.delete(stack.namespace, stack.name)


class Offered:
    """The statuses a pass in flight offers, built as the keeper's `Progress` builds them."""

    def __init__(self) -> None:
        self.shown: list[StackStatus] = [StackStatus(phase="Ready")]
        self.progress = Progress(
            self,  # type: ignore[arg-type]  (its writer: `offer` is all it calls)
            StackEvents(None, window=60.0),
            logging.getLogger("test"),
            None,
            generation=1,
            reconcile_at=None,
            max_rows=100,
        )

    def offer(self, build: Callable[[], StackStatus]) -> None:
        self.shown.append(build())

    @property
    def last(self) -> StackStatus:
        return self.shown[-1]

    def state(self) -> str | None:
        return self.last.rollout.state if self.last.rollout else None

    def web_scan(self) -> list[str | None]:
        """The canary's `web` row's securityScan."""
        rows = self.last.deployments
        return [r.security_scan for r in rows if r.cluster_id == CANARY and r.chart_name == "web"]

    def held(self) -> list[str]:
        rollout = self.last.rollout
        return [h.cluster_id for h in rollout.stages[0].held_checks] if rollout else []

    def critical(self) -> int | None:
        security = self.last.security
        return security.critical_issues if security else None

    async def until(self, wanted: Callable[[], bool], limit: float) -> float:
        start = time.monotonic()
        while not wanted():
            assert time.monotonic() - start < limit, (self.last.rollout, self.last.security)
            await asyncio.sleep(0.2)
        return time.monotonic() - start


async def soak_with_security(
    fleet: FleetInventory, env: HelmEnvironment, repo: str, standin: StandInProcess
) -> tuple[Engine, Stack, Offered, asyncio.Task[StackResult]]:
    """A canary soaking 60 s under `checks.security`, its image clean when it starts: the
    test's waits end within 50 s of the soak's start (20 s for a hold, 30 s for its end),
    so the soak still goes on when they are done."""
    ns = f"checks-soak-{uuid.uuid4().hex[:6]}"
    config = addons(repo, **{"neuvector.apiService": "https:herd-nv-standin:10443"})
    probe = LiveProbe(ReadinessReader(env), scans=AddonProbe(config.catalog, env))
    engine = Engine(fleet, env, addons=config.catalog, checks=probe)
    chart = {"name": "web", "chart": "app", "repo": repo, "version": "0.1.0"}
    security = {"failOn": "Critical", "pendingTimeout": "10m"}
    canary = {"pause": "60s", "checks": {"readiness": False, "security": security}}
    stack = staged_stack(ns, [{**chart, "namespace": ns}], canary, security="enabled")
    offered = Offered()
    await engine.apply(stack)  # NeuVector not reachable yet (its namespace is new): held
    expose_standin(fleet.beds[CANARY], NV_NS, standin)
    standin.rescan_image(CannedImage(APP_OLD, medium=3))  # clean: the soak begins
    progress = offered.progress  # wired as the keeper wires it
    staging = StageInputs(on_stage=progress.stage, on_checks=progress.checks)
    task = asyncio.create_task(engine.apply(stack, progress.record, staging=staging))
    try:
        await offered.until(lambda: offered.state() == "Paused", 180)  # it soaks
    except BaseException:
        await stop_soak(engine, stack, fleet, standin, task)
        raise
    assert offered.last.phase == "Deploying"
    return engine, stack, offered, task


async def stop_soak(
    engine: Engine,
    stack: Stack,
    fleet: FleetInventory,
    standin: StandInProcess,
    task: asyncio.Task[StackResult],
) -> None:
    if not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    standin.rescan_image(CannedImage(APP_OLD, critical=1, high=2, medium=3))
    remove_standin(fleet.beds[CANARY], NV_NS)
    await engine.delete(stack.namespace, stack.name)


async def complete_after_soak(
    fleet: FleetInventory, stack: Stack, task: asyncio.Task[StackResult]
) -> None:
    assert not task.done()  # the soak goes on in the same pass
    ns = stack.spec.charts[0].namespace
    assert deployments(fleet, PROD, ns) == []
    result = await asyncio.wait_for(task, 180)
    assert result.rollout is not None
    assert result.rollout.status.state == "Complete", result.rollout.status
    assert deployments(fleet, PROD, ns) == ["deployment.apps/web"]


async def test_a_hold_and_critical_issues_show_and_clear_while_it_soaks(
    fleet: FleetInventory,
    env: HelmEnvironment,
    chart_repo_url: str,
    standin: StandInProcess,
) -> None:
    """The status a pass offers while it soaks (`StageInputs.on_checks`, built by the
    keeper's `Progress`) follows the security check: a hold shows, and empties within
    seconds of the image being clean, while the soak goes on to prod. `status.security`
    in it is what the check read (not the last pass's probe): a critical vulnerability
    found by a rescan shows in `criticalIssues`, and is gone within seconds of a clean
    rescan. One soak serves both: each wait is bounded well inside the pause."""
    engine, stack, offered, task = await soak_with_security(fleet, env, chart_repo_url, standin)
    try:
        assert offered.critical() == 0, offered.last.security  # the soak began clean
        standin.rescan_image(CannedImage(APP_OLD, critical=1, high=2, medium=3))
        held = await offered.until(lambda: offered.held() == [CANARY], 20)
        assert "1 held by checks" in offered.last.message
        assert offered.state() == "Progressing"
        await offered.until(lambda: offered.critical() == 1, 20 - held)
        assert offered.web_scan() == ["Failed"]
        standin.rescan_image(CannedImage(APP_OLD, medium=3))
        cleared = await offered.until(lambda: offered.held() == [], 30)
        assert cleared < 15, cleared
        assert offered.state() == "Paused"
        assert "soaking" in offered.last.message
        cleared += await offered.until(lambda: offered.critical() == 0, 30 - cleared)
        assert cleared < 15, cleared  # both within 15 s of the clean rescan
        assert offered.web_scan() == ["Passed"], offered.last.deployments
        await complete_after_soak(fleet, stack, task)
    finally:
        await stop_soak(engine, stack, fleet, standin, task)
