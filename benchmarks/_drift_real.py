"""Drift on real clusters: 3 test-bed clusters x 5 fixture charts, through Herd's engine.

Role: the real half of `benchmarks.drift_bench` (which prints both halves). Three real
API servers (`e2e.testbed.controlplane.TestBed`), the fixture chart repository, and one
Stack of five fixture charts (`app`, `core`, `gadgets`, `with-crd`, and `slow` with 200
ConfigMaps: 208 objects per cluster, each chart in its own namespace: 9 kind-namespace
groups per cluster) with a short drift interval. `Keeper` runs `Engine.apply` the way
the operator's keeper does: the next pass when the engine says the next drift check is
due (`StackResult.drift_wait`), at once when the spec changes. What each pass's drift
checks cost is measured where they run (`Probe` wraps `herd.clusters.drift.check_cluster`
as `herd.rollout.drift` calls it, in its thread): HTTP requests counted on the real
clients (`e2e.testbed.counting`), the checks' thread CPU and wall time; beside them the
whole pass's wall time and process CPU (helm runs in child processes: not counted).

1% of the objects (a scaled Deployment, a deleted Service, an edited custom resource, the
rest ConfigMap data edits) are changed at a random moment, concurrently with the passes;
the delay to the pass that reports them (Warn) and to the one that restored them
(Correct) is checked against one interval plus 10%.

Callers: `benchmarks.drift_bench` (run it through /work/notes/e2elock: it starts a bed).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import dynamic

from e2e.testbed import binaries
from e2e.testbed.chartrepo import ChartRepo
from e2e.testbed.controlplane import TestBed
from e2e.testbed.counting import RequestLog
from herd.api import parse_stack
from herd.api.v1 import Stack
from herd.clusters import drift as cluster_drift
from herd.clusters.drift import DriftMemory
from herd.clusters.files import FileCluster, FileSource
from herd.clusters.inventory import Inventory
from herd.clusters.kubeconfigs import KubeconfigStore
from herd.engine.engine import Engine
from herd.engine.protocols import StackResult
from herd.helm.environment import HelmEnvironment, find_helm
from herd.kube.client import api_client_from_kubeconfig
from herd.plan.drift import ObjectRef
from herd.plan.releases import ReleaseKey
from herd.plan.results import State
from herd.rollout import drift as rollout_drift

CLUSTERS = [f"drift-{i}" for i in range(1, 4)]
CHARTS = {  # release -> fixture chart, version
    "app": ("app", "0.1.0"),
    "core": ("core", "2.8.6"),
    "gadgets": ("gadgets", "0.1.0"),
    "widget": ("with-crd", "0.1.0"),
    "slow": ("slow", "0.1.0"),
}
SHARE = 0.01
SLOW_COUNT = 200  # ConfigMaps of `slow`: 208 objects per cluster, 1% of the fleet's is 6
RESYNC = 300.0  # the operator's default resync: passes come from the drift interval here
TOO_LONG = 4.0  # intervals to wait for a detection or a correction before giving up
Change = tuple[ReleaseKey, ObjectRef]


def stack(repo: str, mode: str, interval: float) -> Stack:
    charts: list[dict[str, Any]] = [
        {"name": n, "chart": c, "repo": repo, "version": v, "namespace": f"bd-{n}"}
        for n, (c, v) in CHARTS.items()
    ]
    charts[-1]["values"] = {"inline": {"count": SLOW_COUNT}}
    spec = {
        "targets": {"selector": {"matchLabels": {"bench": "drift"}}},
        "charts": charts,
        "drift": {"mode": mode, "interval": f"{interval:g}s"},
    }
    body = {"apiVersion": "herd.suse.com/v1", "kind": "Stack", "spec": spec}
    body["metadata"] = {"name": "drift-bench", "namespace": "default"}
    return parse_stack(body)


@dataclass
class Probe:
    """What the drift checks of a pass cost, summed over clusters (their threads)."""

    requests: int = 0
    cpu: float = 0.0
    wall: float = 0.0
    checked: int = 0  # releases whose check ran (their next check moved)
    groups: int = 0  # kind-namespace groups of those releases
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self) -> Probe:
        with self.lock:
            done = Probe(self.requests, self.cpu, self.wall, self.checked, self.groups)
            self.requests, self.cpu, self.wall, self.checked, self.groups = 0, 0.0, 0.0, 0, 0
        return done

    def wrap(self, check: Callable[..., Any]) -> Callable[..., Any]:
        def measured(memory: DriftMemory, owner: str, checks: list[Any], **kw: Any) -> Any:
            logs = [RequestLog(kw["admin"])]
            if kw["writer"] is not kw["admin"]:
                logs.append(RequestLog(kw["writer"]))
            due = {c.key: _due(memory, owner, c.key) for c in checks}
            cpu, wall = time.thread_time(), time.perf_counter()
            try:
                return check(memory, owner, checks, **kw)
            finally:
                ran = [k for k in due if _due(memory, owner, k) != due[k]]
                refs = {r for k in ran for r in memory.known[(owner, k)].objects}
                with self.lock:
                    self.requests += sum(len(log.requests) for log in logs)
                    self.cpu += time.thread_time() - cpu
                    self.wall += time.perf_counter() - wall
                    self.checked += len(ran)
                    self.groups += len({(r.api_version, r.kind, r.namespace) for r in refs})

        return measured


def _due(memory: DriftMemory, owner: str, key: ReleaseKey) -> float | None:
    known = memory.known.get((owner, key))
    return known.due if known is not None else None


@dataclass
class Pass:
    result: StackResult
    ended: float  # epoch seconds
    wall: float
    cpu: float  # the process's, helm's child processes not included
    drift: Probe

    def drifted(self) -> set[Change]:
        return {(r.key, o.ref) for r in self.result.releases if r.drift for o in r.drift.objects}

    def corrected(self) -> int:
        return sum(r.drift.corrected for r in self.result.releases if r.drift)


class Keeper:
    """`Engine.apply` in a loop as the operator's keeper runs it."""

    def __init__(self, engine: Engine, stack: Stack, probe: Probe) -> None:
        self.engine, self.stack, self.probe = engine, stack, probe
        self.passes: list[Pass] = []
        self._wake = asyncio.Event()
        self._stop = False
        self.error: BaseException | None = None

    def change(self, stack: Stack) -> None:
        """A spec change: the operator's next pass starts at once."""
        self.stack = stack
        self._wake.set()

    def stop(self) -> None:
        self._stop = True
        self._wake.set()

    async def run(self) -> None:
        try:
            await self._loop()
        except Exception as error:  # told by `until`, which the benchmark waits in
            self.error = error

    async def _loop(self) -> None:
        while not self._stop:
            cpu, wall = time.process_time(), time.perf_counter()
            result = await self.engine.apply(self.stack)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            self.passes.append(Pass(result, time.time(), wall, cpu, self.probe.take()))
            wait = max(0.5, min(result.drift_wait or RESYNC, RESYNC))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    async def until(
        self, what: str, test: Callable[[Pass], bool], after: int, limit: float
    ) -> tuple[int, Pass]:
        """The first pass from the `after`-th on that passes `test`, and its index."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if self.error is not None:
                raise SystemExit(f"drift benchmark: a pass failed: {self.error!r}")
            for index in range(after, len(self.passes)):
                if test(self.passes[index]):
                    return index, self.passes[index]
            await asyncio.sleep(0.2)
        raise SystemExit(f"drift benchmark: no pass {what} within {limit:.0f} s")


def show(label: str, one: Pass) -> None:
    d = one.drift
    per = d.requests / d.checked if d.checked else 0.0
    group = d.requests / d.groups if d.groups else 0.0
    print(
        f"  {label:<22} checked {d.checked:2d}  requests {d.requests:4d}  /release {per:5.2f}"
        f"  /group {group:5.2f}  drift cpu {d.cpu:5.2f}s wall {d.wall:5.2f}s"
        f"  | pass wall {one.wall:5.2f}s cpu {one.cpu:5.2f}s"
    )


def _order(change: Change) -> tuple[str, str, str, ObjectRef]:
    key, ref = change
    return key.cluster, key.namespace, key.name, ref


class Changer:
    """Makes 1% of the release objects drift, as admin, in ways the issue lists."""

    def __init__(self, bed: TestBed, memory: DriftMemory, rng: random.Random) -> None:
        client = dynamic.DynamicClient
        self._apis = {
            n: client(api_client_from_kubeconfig(c.kubeconfig))  # type: ignore[no-untyped-call]
            for n, c in bed.clusters.items()
        }
        self._objects = {
            (key, ref): desired for (_, key), k in memory.known.items()
            for ref, desired in k.objects.items()
        }  # fmt: skip
        self._rng, self._used = rng, set[Change]()

    @property
    def total(self) -> int:
        return len(self._objects)

    @property
    def wanted(self) -> int:
        return max(4, round(SHARE * self.total))

    def pick(self) -> list[Change]:
        """One Deployment, one Service, one custom resource, the rest ConfigMaps."""
        free = sorted((c for c in self._objects if c not in self._used), key=_order)
        picked: list[Change] = []
        for kinds in (("Deployment",), ("Service",), ("Widget", "Gadget")):
            picked += self._rng.sample([c for c in free if c[1].kind in kinds], 1)
        maps = [c for c in free if c[1].kind == "ConfigMap"]
        picked += self._rng.sample(maps, self.wanted - len(picked))
        self._used |= set(picked)
        return picked

    def apply(self, picked: list[Change]) -> None:
        for key, ref in picked:
            res = self._apis[key.cluster].resources.get(api_version=ref.api_version, kind=ref.kind)
            where = {"name": ref.name, "namespace": ref.namespace}
            if ref.kind == "Service":
                res.delete(**where)
                continue
            desired = self._objects[(key, ref)]
            body: dict[str, Any] = {"spec": {"replicas": 3}}
            if ref.kind == "ConfigMap":
                body = {"data": {next(iter(desired["data"])): "edited by hand"}}
            elif ref.kind != "Deployment":
                body = {"spec": {"size": 99}}
            res.patch(body=body, content_type="application/merge-patch+json", **where)

    def close(self) -> None:
        for api in self._apis.values():
            api.client.close()


async def timed_change(
    keeper: Keeper, changer: Changer, interval: float, rng: random.Random
) -> tuple[list[Change], float, int]:
    """1% changed at a random moment of the next interval: what, when, the pass index."""
    await asyncio.sleep(rng.uniform(0, interval))
    picked, mark = changer.pick(), len(keeper.passes)
    started = time.time()
    await asyncio.to_thread(changer.apply, picked)
    return picked, started, mark


def _reported(picked: list[Change]) -> Callable[[Pass], bool]:
    return lambda one: set(picked) <= one.drifted()


def _restored(picked: list[Change], started: float) -> Callable[[Pass], bool]:
    touched = {key for key, _ in picked}

    def test(one: Pass) -> bool:
        if one.drifted() & set(picked):
            return False
        mine = [r.drift for r in one.result.releases if r.key in touched and r.drift]
        return all(d.corrected_at and d.corrected_at >= started for d in mine)

    return test


async def steady(keeper: Keeper, limit: float) -> int:
    """Deployed, each release checked once (its manifest read), then a pass over
    untouched releases: both shown; the index after them."""
    releases = len(CLUSTERS) * len(CHARTS)

    def deployed(one: Pass) -> bool:
        rows = one.result.releases
        return len(rows) == releases and all(r.state is State.DEPLOYED for r in rows)

    def checked(one: Pass) -> bool:
        return one.drift.checked == releases

    at, _ = await keeper.until("deploying", deployed, 0, 600)
    at, first = await keeper.until("checking all", checked, at, limit)
    show("first check (reads all)", first)
    at, quiet = await keeper.until("checking again", checked, at + 1, limit)
    show("no drift", quiet)
    if quiet.drifted():
        raise SystemExit(f"drift benchmark: drift before any change: {sorted(quiet.drifted())}")
    return at + 1


async def measure(
    keeper: Keeper, changer: Changer, repo: str, interval: float, rounds: int
) -> list[tuple[str, float]]:
    """Every figure printed as it comes; the delays (label, seconds) returned."""
    limit, rng = TOO_LONG * interval + 60, random.Random(23)
    delays: list[tuple[str, float]] = []
    print(f"  ({changer.total} objects; each round changes 1%: {changer.wanted})")
    for number in range(rounds):
        picked, started, mark = await timed_change(keeper, changer, interval, rng)
        _, seen = await keeper.until("detecting", _reported(picked), mark, limit)
        delays.append(("detected (Warn)", seen.ended - started))
        if number == 0:
            show("1% drift (Warn)", seen)
    mark = len(keeper.passes)
    keeper.change(stack(repo, "Correct", interval))
    _, fixed = await keeper.until("correcting", lambda p: p.corrected() > 0, mark, limit)
    show("Warn's drift corrected", fixed)
    for number in range(rounds):
        picked, started, mark = await timed_change(keeper, changer, interval, rng)
        _, done = await keeper.until("restoring", _restored(picked, started), mark, limit)
        delays.append(("corrected (Correct)", done.ended - started))
        if number == 0:
            show("1% drift (Correct)", done)
    mark = len(keeper.passes)
    _, after = await keeper.until("checking after", lambda p: p.drift.checked > 0, mark, limit)
    show("after correction", after)
    return delays


def report_delays(delays: list[tuple[str, float]], interval: float) -> None:
    target = 1.1 * interval
    for label in dict.fromkeys(label for label, _ in delays):
        took = [d for lab, d in delays if lab == label]
        verdict = "met" if max(took) <= target else "MISSED"
        print(
            f"  change -> {label:<20} max {max(took):5.1f}s  mean {sum(took) / len(took):5.1f}s"
            f"  over {len(took)} rounds  (target <= {target:.1f}s: {verdict})"
        )


def run_real(interval: float, rounds: int) -> None:
    built = binaries.ensure()
    os.environ["HERD_HELM"] = str(built.helm)  # Helm 4, as the operator's image ships
    helm = subprocess.check_output([find_helm(), "version", "--short"], text=True).strip()
    print(f"real: {len(CLUSTERS)} test-bed clusters x {len(CHARTS)} charts, interval "
          f"{interval:g}s, helm {helm}")  # fmt: skip
    workdir = Path(tempfile.mkdtemp(prefix="herd-drift-bench-"))
    bed = TestBed.start(CLUSTERS, workdir, binaries=built)
    probe, memory = Probe(), DriftMemory()
    real = cluster_drift.check_cluster
    rollout_drift.check_cluster = probe.wrap(real)  # type: ignore[attr-defined]
    try:
        with ChartRepo.start(workdir / "repo") as repo, KubeconfigStore(None) as store:
            entries = [
                FileCluster(n, bed.clusters[n].kubeconfig, labels={"bench": "drift"})
                for n in CLUSTERS
            ]
            env = HelmEnvironment()
            engine = Engine(Inventory([FileSource(entries)], store), env, drift=memory)
            keeper = Keeper(engine, stack(repo.url, "Warn", interval), probe)

            async def both() -> list[tuple[str, float]]:
                task = asyncio.create_task(keeper.run())
                try:
                    await steady(keeper, TOO_LONG * interval + 60)
                    changer = Changer(bed, memory, random.Random(1))
                    try:
                        return await measure(keeper, changer, repo.url, interval, rounds)
                    finally:
                        changer.close()
                finally:
                    keeper.stop()
                    await task

            report_delays(asyncio.run(both()), interval)
            env.close()
    finally:
        rollout_drift.check_cluster = real  # type: ignore[attr-defined]
        bed.stop()
        shutil.rmtree(workdir, ignore_errors=True)
