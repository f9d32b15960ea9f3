"""Herd's own overhead at fleet size, simulated: 1,000 clusters x 20 charts. Prints figures.

    .venv/bin/python -m benchmarks.scale_sim [--clusters 1000] [--charts 20]
        [--steps 250,500,1000] [--latency 0] [--profile]

Everything of Herd is real except helm: the kubeconfig-file inventory (`FileSource`,
`KubeconfigStore`: one file per cluster, parsed once, reused by version), target
resolution, planning, the rollout scheduler with the operator's default limits, and the
status the keeper would write (`herd.status.build.stack_status`, built every second while a
pass deploys, as the status writer coalesces, and at its end). The helm layer
(`ClusterHelm`, `ChartCache`) is replaced by a stand-in that keeps releases in memory,
answers at once (or after `--latency` seconds) and records how long each call took: the
one place a stand-in is right, since the figure wanted is Herd's overhead, not helm's.
No cluster or API server is contacted.

For each step (number of clusters) it prints a cold pass (every release installed) and a
no-op pass, time per cluster, peak RSS and the Stack object size with its status; a time
per cluster that grows with the fleet means something grows faster than linearly.
Targets (printed, not asserted): a 1,000-cluster pass <= 30 s of overhead, <= 500 MiB.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import benchmarks._scale_measure as measure
import yaml

from herd.api import parse_stack
from herd.api.charts import ChartSpec
from herd.api.status import StackStatus
from herd.api.v1 import Stack
from herd.clusters.files import FileCluster, FileSource
from herd.clusters.inventory import Inventory
from herd.clusters.kubeconfigs import KubeconfigStore
from herd.engine.engine import Engine
from herd.helm.environment import HelmEnvironment
from herd.names import LABEL_MANAGER, LABEL_STACK
from herd.plan.ownership import Recorded
from herd.plan.releases import DesiredRelease, ObservedRelease
from herd.plan.results import ReleaseResult, now
from herd.rollout.gates import Limits
from herd.status.build import stack_status

STATUS_INTERVAL = 1.0  # as herd.operator.keeper writes an in-progress status


class Recorder:
    """What the stand-in was asked, and how long it took (its own cost, not Herd's)."""

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.calls: dict[str, int] = {}
        self.seconds = 0.0
        self.releases: dict[str, dict[tuple[str, str], ObservedRelease]] = {}

    @contextmanager
    def call(self, verb: str) -> Iterator[None]:
        started = time.perf_counter()
        self.calls[verb] = self.calls.get(verb, 0) + 1
        try:
            yield
        finally:
            self.seconds += time.perf_counter() - started


RECORDER = Recorder(0.0)


class StandInHelm:
    """`herd.helm.client.ClusterHelm` without helm: releases live in `RECORDER.releases`."""

    def __init__(self, env: Any, cluster: str, kubeconfig: Path, *, identity: Any = None):
        self.cluster = cluster
        self.identity = identity
        self._kubeconfig = kubeconfig

    @property
    def kubeconfig(self) -> Path:
        return self._kubeconfig

    @property
    def _store(self) -> dict[tuple[str, str], ObservedRelease]:
        return RECORDER.releases.setdefault(self.cluster, {})

    async def observe(self) -> dict[tuple[str, str], ObservedRelease]:
        with RECORDER.call("list"):
            return dict(self._store)

    async def observe_release(self, namespace: str, name: str) -> ObservedRelease | None:
        with RECORDER.call("get"):
            return self._store.get((namespace, name))

    async def install_or_upgrade(
        self, desired: DesiredRelease, chart_dir: Path, owner: str, manager: str = "operator"
    ) -> Recorded:
        with RECORDER.call("upgrade"):
            if RECORDER.latency:
                await asyncio.sleep(RECORDER.latency)
            key = (desired.key.namespace, desired.key.name)
            before = self._store.get(key)
            revision = before.revision + 1 if before else 1
            labels = {
                "name": desired.key.name,
                "owner": "helm",
                "status": "deployed",
                "version": str(revision),
                LABEL_STACK: desired.owner or owner,
                LABEL_MANAGER: manager,
                **desired.labels,
            }
            self._store[key] = ObservedRelease(
                key[0], key[1], "deployed", revision, labels, time.time()
            )
            return Recorded(revision)

    async def uninstall(self, namespace: str, name: str, timeout: str = "5m") -> None:
        with RECORDER.call("uninstall"):
            self._store.pop((namespace, name), None)

    async def recover(self, observed: ObservedRelease) -> None:
        await self.uninstall(observed.namespace, observed.name)

    async def manifest(self, namespace: str, name: str, revision: int | None) -> str | None:
        return ""

    async def render(self, desired: DesiredRelease, chart_dir: Path) -> str:
        return ""

    def close(self) -> None:
        pass


class StandInCharts:
    """`herd.helm.chart_cache.ChartCache` without `helm pull`."""

    def __init__(
        self, env: Any, directory: Path | None = None, *, slot: Any = None, guard: Any = None
    ) -> None:
        self._directory = Path(tempfile.gettempdir())

    async def get(self, chart: ChartSpec, source: Any = None) -> Path:
        with RECORDER.call("pull"):
            return self._directory

    def close(self) -> None:
        pass


def kubeconfig_text(index: int) -> str:
    port = 10000 + index
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "c", "cluster": {"server": f"https://127.0.0.1:{port}"}}],
            "users": [{"name": "u", "user": {"token": "not-a-real-token"}}],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "c",
        }
    )


def stack(charts: int) -> Stack:
    return parse_stack(
        {
            "apiVersion": "herd.suse.com/v1",
            "kind": "Stack",
            "metadata": {"name": "sim", "namespace": "herd-system", "generation": 1},
            "spec": {
                "targets": {"selector": {"matchLabels": {"fleet": "sim"}}},
                "charts": [
                    {
                        "name": f"c{j:02d}",
                        "chart": "app",
                        "repo": "http://127.0.0.1:1",
                        "version": "0.1.0",
                        "namespace": "sim",
                        # a chain every fifth chart, so the scheduler walks dependencies
                        "dependsOn": [f"c{j - 1:02d}"] if j % 5 else [],
                        "values": {"inline": {"index": j}},
                        "wait": True,
                    }
                    for j in range(charts)
                ],
            },
        }
    )


class StatusBuilder:
    """Builds the status as the keeper would: every second while deploying, and at the end."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.results: dict[Any, ReleaseResult] = {}
        self.builds = 0
        self.seconds = 0.0
        self.previous: StackStatus | None = None

    def record(self, result: ReleaseResult) -> None:
        self.results[result.key] = result

    def build(self, targets: list[str], skipped: Any, charts: int, phase: str | None) -> str:
        started = time.perf_counter()
        status = stack_status(
            list(self.results.values()),
            targets=targets,
            skipped=skipped,
            chart_count=charts,
            generation=1,
            now=now(),
            previous=self.previous,
            phase=phase,
            release_clusters=sorted({r.key.cluster for r in self.results.values()}),
        )
        body = status.model_dump(by_alias=True, exclude_none=True, mode="json")
        text = json.dumps(body)
        self.previous = status
        self.builds += 1
        self.seconds += time.perf_counter() - started
        return text

    async def every_second(self, targets: list[str], charts: int) -> None:
        while True:
            await asyncio.sleep(STATUS_INTERVAL)
            self.build(targets, [], charts, "Deploying")


async def one_pass(
    engine: Engine, spec: Stack, builder: StatusBuilder
) -> tuple[float, float, str, int]:
    """Wall and CPU time of a pass, the final status JSON and the releases acted on."""
    builder.results.clear()
    started, cpu = time.perf_counter(), time.process_time()
    ticker = asyncio.ensure_future(builder.every_second([], len(spec.spec.charts)))
    try:
        result = await engine.apply(spec, builder.record)
    finally:
        ticker.cancel()
    targets = [c.id for c in result.targets]
    text = builder.build(targets, result.skipped, result.chart_count, None)
    took, cpu = time.perf_counter() - started, time.process_time() - cpu
    acted = sum(1 for r in result.releases if r.action is not None and r.action.value != "nothing")
    failed = [r for r in result.releases if r.state.value not in ("Deployed",)]
    if failed:
        raise SystemExit(f"{len(failed)} releases not Deployed, e.g. {failed[0]}")
    return took, cpu, text, acted


async def step(clusters: int, charts: int, directory: Path) -> dict[str, float]:
    RECORDER.releases.clear()
    RECORDER.calls.clear()
    RECORDER.seconds = 0.0
    entries = []
    for i in range(clusters):
        path = directory / f"k{i}.yaml"
        if not path.exists():
            path.write_text(kubeconfig_text(i))
            path.chmod(0o600)
        entries.append(FileCluster(f"c-{i:04d}", path, None, {"fleet": "sim"}))
    spec = stack(charts)
    figures: dict[str, float] = {}
    env = HelmEnvironment(directory / "helm")
    with KubeconfigStore(None) as store:
        engine = Engine(Inventory([FileSource(entries)], store), env, limits=Limits())
        builder = StatusBuilder(spec)
        cold, cold_cpu, _, installed = await one_pass(engine, spec, builder)
        standin = RECORDER.seconds
        noop, noop_cpu, text, acted = await one_pass(engine, spec, builder)
        releases = clusters * charts
        size = len(json.dumps({"apiVersion": "herd.suse.com/v1", "kind": "Stack",
                               "spec": spec.spec.model_dump(by_alias=True, exclude_none=True,
                                                            mode="json"),
                               "status": json.loads(text)}))  # fmt: skip
        rss, peak = measure.memory(os.getpid())
        line = f"{clusters:>5} clusters x {charts} charts ({releases} releases)"
        print(
            f"{line}: cold pass {cold:.2f} s, {cold_cpu:.2f} CPU-s ({installed} installed, "
            f"{releases / cold:.0f}/s, stand-in {standin:.2f} s of it); no-op pass "
            f"{noop:.2f} s, {noop_cpu:.2f} CPU-s ({acted} acted); CPU per cluster "
            f"{cold_cpu / clusters * 1000:.1f} ms cold, {noop_cpu / clusters * 1000:.2f} ms "
            f"no-op; status builds {builder.builds} ({builder.seconds:.2f} s); Stack "
            f"{size / 1024:.1f} KiB; RSS {rss / measure.MIB:.0f} MiB (peak "
            f"{peak / measure.MIB:.0f} MiB)",
            flush=True,
        )
        figures = {
            "cold": cold,
            "noop": noop,
            "cold_cpu": cold_cpu,
            "noop_cpu": noop_cpu,
            "size": size,
            "peak": peak,
        }
    env.close()
    return figures


async def main_async(args: argparse.Namespace) -> None:
    steps = sorted({int(s) for s in args.steps.split(",") if s} | {args.clusters})
    RECORDER.latency = args.latency
    with (
        tempfile.TemporaryDirectory(prefix="herd-sim-") as directory,
        mock.patch("herd.rollout.scheduler.ClusterHelm", StandInHelm),
        mock.patch("herd.rollout.scheduler.ChartCache", StandInCharts),
    ):
        results = {n: await step(n, args.charts, Path(directory)) for n in steps}
    first, last = results[steps[0]], results[steps[-1]]
    growth = (last["cold_cpu"] / steps[-1]) / (first["cold_cpu"] / steps[0])
    noop_growth = (last["noop_cpu"] / steps[-1]) / (first["noop_cpu"] / steps[0])
    print(
        f"CPU time per cluster from {steps[0]} to {steps[-1]} clusters: cold x{growth:.2f}, "
        f"no-op x{noop_growth:.2f} (1.0 = linear; CPU time, so other programs on the "
        "machine do not count)"
    )
    top = results[args.clusters]
    print(
        f"simulated {args.clusters}-cluster pass: {top['cold']:.1f} s cold, {top['noop']:.1f} s "
        f"no-op of Herd overhead (target <= 30 s); peak RSS {top['peak'] / measure.MIB:.0f} MiB "
        f"(target <= 500 MiB); Stack {top['size'] / 1024:.1f} KiB (target <= 100 KiB)"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--charts", type=int, default=20)
    parser.add_argument("--steps", default="250,500", help="smaller fleets to compare with")
    parser.add_argument("--latency", type=float, default=0.0, help="stand-in helm seconds")
    parser.add_argument("--profile", type=Path, help="write cProfile stats here")
    args = parser.parse_args(argv)
    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(asyncio.run, main_async(args))
        profiler.dump_stats(str(args.profile))
        pstats.Stats(str(args.profile)).sort_stats("cumulative").print_stats(25)
        return
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
