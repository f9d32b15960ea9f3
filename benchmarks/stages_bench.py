"""Staged rollout benchmark: 3 stages over 4 clusters vs the stages' critical paths.

    .venv/bin/python -m benchmarks.stages_bench [--rounds 1]

On the local test bed (real API servers, real helm, real chart repository), the diamond
Stack of `benchmarks.rollout_bench` (five small charts, `wait: true`) goes to four
clusters in three stages with no pauses: `one` (bench-1), `two` (bench-2), and the
implicit last stage (bench-3, bench-4). A stage starts only when the one before is done,
so no scheduler can beat the sum of the stages' critical paths (per stage: the longest
dependsOn chain of the helm durations Herd measured, worst cluster of the stage).

Figures: the staged `Engine.apply` wall time, the sum of the stages' critical paths and
their ratio (target <= 1.1x), and a no-op staged pass. Then the health gates
(`rollout.checks`, README: Checks): the same rollout with readiness checks and no soak
against the same rollout without (in fresh namespaces, in one run: a ratio, target
<= 1.1x plus the soak), and the time from a breach during a soak to the halted stage:
a metric breach (bench-1's real Prometheus scrapes the test bed's exporter every second;
the exporter's error rate is raised above the check's threshold) and a readiness breach
(a bench-1 pod made unready on its API server); and, with `onFailure: Rollback` on a
generation 2 (new values), the time from the metric breach to the canary's releases back
at generation 1's revisions. Nothing here asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.rollout_bench import DAG, critical_path, stack

from e2e.testbed import binaries, processes
from e2e.testbed import prometheus as bed_prometheus
from e2e.testbed.chartrepo import ChartRepo
from e2e.testbed.controlplane import TestBed
from e2e.testbed.helpers import kubectl
from herd.api import parse_stack
from herd.api.status import RolloutStatus
from herd.api.v1 import Stack
from herd.clusters.files import FileCluster, FileSource
from herd.clusters.inventory import Inventory
from herd.clusters.kubeconfigs import KubeconfigStore
from herd.engine.engine import Engine
from herd.helm.environment import HelmEnvironment
from herd.plan.clusters import Cluster
from herd.rollout.staged import StageInputs

CLUSTERS = [f"bench-{i}" for i in range(1, 5)]
ERROR_RATIO = (
    'sum(rate(http_requests_total{code=~"5.."}[10s])) / sum(rate(http_requests_total[10s]))'
)
STAGES = [{"name": "one", "clusterIds": ["bench-1"]}, {"name": "two", "clusterIds": ["bench-2"]}]


def staged_stack(
    repo: str,
    namespace: str,
    checks: dict[str, Any] | None = None,
    pause: str | None = None,
    **rollout: Any,
) -> Stack:
    body = stack(repo, namespace).model_dump(by_alias=True, mode="json", exclude_none=True)
    stages = [dict(STAGES[0], **({"pause": pause} if pause else {})), STAGES[1]]
    body["spec"]["rollout"] = {
        "stages": stages, **({"checks": checks} if checks else {}), **rollout
    }  # fmt: skip
    return parse_stack(body)


async def staged_pass(engine: Engine, repo: str, namespace: str) -> tuple[float, float, float]:
    """Wall time, sum of the stages' critical paths, no-op pass time."""
    started = time.monotonic()
    result = await engine.apply(staged_stack(repo, namespace))
    wall = time.monotonic() - started
    failed = [r for r in result.releases if r.state.value != "Deployed"]
    if failed or result.rollout is None or result.rollout.decision.state.value != "Complete":
        raise SystemExit(f"benchmark rollout did not complete: {failed[:1]}")
    paths = 0.0
    for stage in result.rollout.stages:
        mine = [r for r in result.releases if r.key.cluster in stage.clusters]
        paths += critical_path(mine, DAG)
        print(f"  stage {stage.name:<10} {len(stage.clusters)} clusters, critical path "
              f"{critical_path(mine, DAG):6.2f} s")  # fmt: skip
    started = time.monotonic()
    await engine.apply(staged_stack(repo, namespace))
    return wall, paths, time.monotonic() - started


async def checks_overhead(engine: Engine, repo: str, namespace: str) -> tuple[float, float]:
    """Wall time of the same staged rollout without and with readiness checks (no soak)."""
    times = []
    for suffix, checks in (("plain", None), ("checked", {"readiness": True})):
        started = time.monotonic()
        result = await engine.apply(staged_stack(repo, f"{namespace}-{suffix}", checks))
        times.append(time.monotonic() - started)
        if result.rollout is None or result.rollout.decision.state.value != "Complete":
            raise SystemExit(f"benchmark rollout ({suffix}) did not complete")
    return times[0], times[1]


async def breach_to_halt(engine: Engine, bed: TestBed, repo: str, namespace: str) -> float:
    """Seconds from a canary pod turning unready during a 120 s soak to the halted stage."""
    paused = asyncio.Event()

    def on_stage(status: RolloutStatus) -> None:
        if status.state == "Paused":
            paused.set()

    body = staged_stack(repo, namespace, {"readiness": True}, pause="120s")
    task = asyncio.create_task(engine.apply(body, staging=StageInputs(on_stage=on_stage)))
    await asyncio.wait_for(paused.wait(), 300)
    kubeconfig = bed.clusters["bench-1"].kubeconfig
    pod = await asyncio.to_thread(
        kubectl, kubeconfig, "get", "pods", "-n", namespace, "-o",
        "jsonpath={.items[0].metadata.name}",
    )  # fmt: skip
    patch = {"status": {"conditions": [{"type": "Ready", "status": "False"}]}}
    await asyncio.to_thread(
        kubectl, kubeconfig, "patch", "pod", pod, "-n", namespace, "--subresource=status",
        "--type=merge", "-p", json.dumps(patch),
    )  # fmt: skip
    broke = time.monotonic()
    result = await asyncio.wait_for(task, 300)
    if result.rollout is None or result.rollout.decision.state.value != "Halted":
        raise SystemExit("the breach did not halt the stage")
    return time.monotonic() - broke


class WithPrometheus:
    """The bench inventory, bench-1 with its Prometheus URL (as its annotation would say)."""

    def __init__(self, inner: Inventory, urls: dict[str, str]) -> None:
        self._inner = inner
        self._urls = urls

    async def clusters(self) -> list[Cluster]:
        found = await self._inner.clusters()
        return [dataclasses.replace(c, prometheus_url=self._urls.get(c.id, "")) for c in found]

    async def kubeconfig(self, cluster: Cluster) -> Path:
        return await self._inner.kubeconfig(cluster)


async def metric_breach_to_halt(
    engine: Engine, monitored: bed_prometheus.Monitored, repo: str, namespace: str
) -> float:
    """Seconds from the exporter's error rate going above the threshold, during a 120 s
    soak, to the halted stage (the evaluation runs every second)."""
    monitored.exporter.set(rates={"200": 40, "500": 0})
    await asyncio.to_thread(
        bed_prometheus.wait_for_value, monitored.url, ERROR_RATIO, lambda v: v == 0
    )
    metric = {"name": "error-rate", "query": ERROR_RATIO, "threshold": {"max": 0.1},
              "interval": "1s", "failureLimit": 1}  # fmt: skip
    paused = asyncio.Event()

    def on_stage(status: RolloutStatus) -> None:
        if status.state == "Paused":
            paused.set()

    body = staged_stack(repo, namespace, {"readiness": False, "metrics": [metric]}, "120s")
    task = asyncio.create_task(engine.apply(body, staging=StageInputs(on_stage=on_stage)))
    await asyncio.wait_for(paused.wait(), 300)
    await asyncio.to_thread(monitored.exporter.set, rates={"200": 20, "500": 20})
    broke = time.monotonic()
    result = await asyncio.wait_for(task, 300)
    if result.rollout is None or result.rollout.decision.state.value != "Halted":
        raise SystemExit("the metric breach did not halt the stage")
    return time.monotonic() - broke


async def metric_breach_to_rollback(
    engine: Engine, monitored: bed_prometheus.Monitored, repo: str, namespace: str
) -> tuple[float, float]:
    """Seconds from a metric breach during a 120 s soak of generation 2 (new values,
    `onFailure: Rollback`) to the halted stage, and to the canary's last release back at
    its last good revision (generation 1's)."""
    first = await engine.apply(staged_stack(repo, namespace, onFailure="Rollback"))
    if first.rollout is None or first.rollout.decision.state.value != "Complete":
        raise SystemExit("generation 1 did not complete")
    monitored.exporter.set(rates={"200": 40, "500": 0})
    await asyncio.to_thread(
        bed_prometheus.wait_for_value, monitored.url, ERROR_RATIO, lambda v: v == 0
    )
    metric = {"name": "error-rate", "query": ERROR_RATIO, "threshold": {"max": 0.1},
              "interval": "1s", "failureLimit": 1}  # fmt: skip
    body = staged_stack(
        repo, namespace, {"readiness": False, "metrics": [metric]}, "120s", onFailure="Rollback"
    ).model_dump(by_alias=True, mode="json", exclude_none=True)
    body["metadata"]["generation"] = 2
    for chart in body["spec"]["charts"]:
        chart["values"] = {"inline": {"message": "generation 2"}}
    paused, halted = asyncio.Event(), []

    def on_stage(status: RolloutStatus) -> None:
        if status.state == "Paused":
            paused.set()
        if status.state == "Halted" and not halted:
            halted.append(time.monotonic())

    task = asyncio.create_task(
        engine.apply(parse_stack(body), staging=StageInputs(on_stage=on_stage))
    )
    await asyncio.wait_for(paused.wait(), 300)
    await asyncio.to_thread(monitored.exporter.set, rates={"200": 20, "500": 20})
    broke, wall = time.monotonic(), time.time()
    result = await asyncio.wait_for(task, 300)
    rolled = result.rollout.rollback if result.rollout else []
    back = [r for r in rolled if r.action is not None and r.action.value == "rollback"]
    if not halted or not back or any(r.state.value != "Deployed" for r in back):
        raise SystemExit(f"the metric breach did not roll the canary back: {rolled[:1]}")
    done = max(r.finished.timestamp() for r in back if r.finished is not None)
    return halted[0] - broke, done - wall


def report_checks(engine: Engine, bed: TestBed, repo: str, number: int) -> None:
    plain, checked = asyncio.run(checks_overhead(engine, repo, f"ck-{number}"))
    print(f"  without checks          {plain:7.2f} s")
    print(
        f"  with readiness checks   {checked:7.2f} s   with/without {checked / plain:5.2f}x"
        "   (target <= 1.1x, no soak)"
    )
    halt = asyncio.run(breach_to_halt(engine, bed, repo, f"br-{number}"))
    print(f"  readiness breach to halted stage  {halt:7.2f} s   (soak 120 s, tick 5 s)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="herd-stages-bench-"))
    bed = TestBed.start(CLUSTERS, workdir, binaries=binaries.ensure())
    try:
        with ChartRepo.start(workdir / "repo") as repo:
            entries = [
                FileCluster(n, bed.clusters[n].kubeconfig, labels={"bench": "yes"})
                for n in CLUSTERS
            ]
            env = HelmEnvironment()
            monitored = bed_prometheus.start_local(
                "bench-1", workdir / "prometheus", workdir / processes.PIDFILE
            )
            with KubeconfigStore(None) as store:
                inventory = Inventory([FileSource(entries)], store)
                engine = Engine(inventory, env)
                for number in range(1, args.rounds + 1):
                    print(f"round {number}: 3 stages over {len(CLUSTERS)} clusters x {len(DAG)}")
                    wall, paths, noop = asyncio.run(staged_pass(engine, repo.url, f"st-{number}"))
                    print(f"  herd staged rollout     {wall:7.2f} s")
                    print(
                        f"  sum of critical paths   {paths:7.2f} s   herd/sum {wall / paths:5.2f}x"
                        "   (target <= 1.1x)"
                    )
                    print(f"  herd no-op staged pass  {noop:7.2f} s")
                    report_checks(engine, bed, repo.url, number)
                    metered = Engine(WithPrometheus(inventory, {"bench-1": monitored.url}), env)
                    halt = asyncio.run(
                        metric_breach_to_halt(metered, monitored, repo.url, f"mb-{number}")
                    )
                    print(f"  metric breach to halted stage     {halt:7.2f} s   (soak 120 s, "
                          "interval 1 s, scrape 1 s)")  # fmt: skip
                    halt, back = asyncio.run(
                        metric_breach_to_rollback(metered, monitored, repo.url, f"rb-{number}")
                    )
                    print(f"  with onFailure: Rollback: breach to halted {halt:6.2f} s, to "
                          f"canary rolled back (5 releases) {back:6.2f} s")  # fmt: skip
            env.close()
            monitored.stop()
    finally:
        bed.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
