"""Fleet rollback benchmark: the time from a failed stage to a rolled-back cluster.

    /work/notes/e2elock .venv/bin/python -m benchmarks.rollback_bench [--rounds 2]

On the local test bed (real API servers, real helm, real chart repository): a chain
db <- api <- web of the fixture chart `app` (`wait: true`) goes to three clusters in two
stages, canary (bench-1) then prod (bench-2, bench-3), with `onFailure: Rollback`.
Generation 2 moves db to chart 0.2.0 and api to new values, and web to the fixture chart
`broken`, whose render fails: the canary stage fails and the canary is rolled back (api,
then db; web's failed upgrade wrote no revision, so it is unchanged).

Figures, per round: the time from the failed release's row (the failure that halts the
stage) to the last rollback row of the canary, the generation-2 pass's wall time, and the
same pass with `onFailure: Halt` (before: the canary stays broken until someone acts); the
rollback's helm calls run with `--wait` as upgrades do. Nothing here asserts (a rollback
that did not happen ends the run with an error).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from e2e.testbed import binaries
from e2e.testbed.chartrepo import ChartRepo
from e2e.testbed.controlplane import TestBed
from herd.api import parse_stack
from herd.api.v1 import Stack
from herd.clusters.files import FileCluster, FileSource
from herd.clusters.inventory import Inventory
from herd.clusters.kubeconfigs import KubeconfigStore
from herd.engine.engine import Engine
from herd.helm.environment import HelmEnvironment
from herd.plan.results import ReleaseResult, State

CLUSTERS = [f"bench-{i}" for i in range(1, 4)]


def chain(repo: str, namespace: str, generation: int, on_failure: str = "Rollback") -> Stack:
    def chart(name: str, chart: str, version: str, deps: list[str], message: str) -> Any:
        return {
            "name": name, "chart": chart, "repo": repo, "version": version,
            "namespace": namespace, "dependsOn": deps, "wait": True, "timeout": "2m",
            "values": {"inline": {"message": message}},
        }  # fmt: skip

    moved = generation > 1
    charts = [
        chart("db", "app", "0.2.0" if moved else "0.1.0", [], "db"),
        chart("api", "app", "0.1.0", ["db"], f"api v{generation}"),
        chart("web", "broken" if moved else "app", "0.1.0", ["api"], "web"),
    ]
    stages = [
        {"name": "canary", "clusterIds": ["bench-1"]},
        {"name": "prod", "clusterIds": ["bench-2", "bench-3"]},
    ]
    return parse_stack(
        {
            "apiVersion": "herd.suse.com/v1",
            "kind": "Stack",
            "metadata": {
                "name": f"rb-{namespace}",
                "namespace": "default",
                "generation": generation,
            },
            "spec": {
                "targets": {"selector": {"matchLabels": {"bench": "yes"}}},
                "rollout": {"stages": stages, "onFailure": on_failure},
                "charts": charts,
            },
        }
    )


async def one_round(engine: Engine, repo: str, namespace: str) -> tuple[float, float, int]:
    """Seconds from the failure to the canary rolled back, the pass's wall time, and the
    releases rolled back."""
    first = await engine.apply(chain(repo, namespace, 1))
    if first.rollout is None or first.rollout.decision.state.value != "Complete":
        raise SystemExit("generation 1 did not complete")
    failed_at: list[float] = []

    def progress(row: ReleaseResult) -> None:
        if row.state is State.FAILED and not failed_at:
            failed_at.append(time.time())

    started = time.monotonic()
    result = await engine.apply(chain(repo, namespace, 2), progress)
    wall = time.monotonic() - started
    rolled = [r for r in result.rollout.rollback] if result.rollout else []
    back = [r for r in rolled if r.action is not None and r.action.value == "rollback"]
    if not failed_at or not back or any(r.state is not State.DEPLOYED for r in back):
        raise SystemExit(f"the canary was not rolled back: {rolled}")
    done = max(r.finished.timestamp() for r in back if r.finished is not None)
    return done - failed_at[0], wall, len(back)


async def halt_round(engine: Engine, repo: str, namespace: str) -> float:
    """The same generation-2 pass with `onFailure: Halt` (today's behaviour): its wall time."""
    await engine.apply(chain(repo, namespace, 1, "Halt"))
    started = time.monotonic()
    await engine.apply(chain(repo, namespace, 2, "Halt"))
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="herd-rollback-bench-"))
    bed = TestBed.start(CLUSTERS, workdir, binaries=binaries.ensure())
    try:
        with ChartRepo.start(workdir / "repo") as repo:
            entries = [
                FileCluster(n, bed.clusters[n].kubeconfig, labels={"bench": "yes"})
                for n in CLUSTERS
            ]
            env = HelmEnvironment()
            with KubeconfigStore(None) as store:
                engine = Engine(Inventory([FileSource(entries)], store), env)
                for number in range(1, args.rounds + 1):
                    back, wall, count = asyncio.run(one_round(engine, repo.url, f"rb-{number}"))
                    print(
                        f"round {number}: canary of a 3-chart chain, {count} releases rolled back"
                    )
                    print(f"  failed stage -> canary rolled back   {back:6.2f} s")
                    print(f"  generation-2 pass (fail + rollback)  {wall:6.2f} s")
                    halt = asyncio.run(halt_round(engine, repo.url, f"rh-{number}"))
                    print(f"  same pass, onFailure: Halt           {halt:6.2f} s   (canary broken)")
            env.close()
    finally:
        bed.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
