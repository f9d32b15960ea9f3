"""The four ways the peer benchmark deploys one case: herd apply, the Herd operator,
helmfile, Flux. Each has `deploy(case)` (fresh namespaces, to all Ready) and `noop(case)`
(the same again with nothing changed), both returning `_peers_measure.Figures`.

Callers: `benchmarks/peers.py`. Every tool reaches the downstream clusters with the test
bed's admin kubeconfigs (the audit logs count that identity) and charts from the test
bed's chart repository; every helm is the test bed's Helm 4 except Flux's, which is
compiled into helm-controller.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from benchmarks._peers_measure import Figures, Window, idle_rate
from kubernetes import client

from e2e.testbed.controlplane import Cluster, TestBed
from e2e.testbed.herd_controller import CONTROLLER_NS, Controller
from e2e.testbed.processes import free_port
from herd.kube.client import api_client_from_kubeconfig

FLUX_NS = "flux-system"
TIMEOUT = 600.0


@dataclass(frozen=True)
class Chart:
    name: str
    chart: str  # in the test bed's repository: `app` or `slow`
    deps: tuple[str, ...] = ()
    namespace: str = ""  # a namespace of its own (the RAG shape), else the case's


@dataclass(frozen=True)
class Case:
    name: str
    charts: tuple[Chart, ...]

    def namespace(self, tool: str, chart: Chart) -> str:
        return f"{tool}-{self.name}" + (f"-{chart.namespace}" if chart.namespace else "")


@dataclass
class Bed:
    """What every tool shares: the clusters, the chart repository, a work directory."""

    bed: TestBed
    repo: str
    workdir: Path
    helm: Path  # the test bed's Helm 4
    count: int = 0  # how many downstream clusters this round targets (the first ones)
    idle: float = 0.0  # their API servers' CPU-s per second with no tool running
    # Measure `idle` again for this long before each pass (0: once per cluster count): the
    # workloads earlier passes left (kwok's pods, their controllers) raise it as a run goes.
    idle_seconds: float = 0.0

    @property
    def management(self) -> Cluster:
        return self.bed.clusters["management"]

    @property
    def downstream(self) -> list[Cluster]:
        found = [c for name, c in self.bed.clusters.items() if name != "management"]
        return found[: self.count] if self.count else found

    def label(self) -> dict[str, str]:
        """The label of this round's clusters (Stack selectors, herd apply's file)."""
        return {f"bench-{self.count}": "yes"}

    def window(self, roots: Callable[[], list[int]], controllers: bool) -> Window:
        if self.idle_seconds > 0:
            self.idle = idle_rate(self.downstream, self.idle_seconds)
        window = Window(self.downstream, self.management, roots, controllers, self.idle)
        return window.start()


def wait_until(what: str, probe: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


def run_all(commands: list[tuple[list[str], dict[str, str]]], bed: Bed) -> Figures:
    """Run command-line tools in parallel (one per cluster) and measure them together."""
    running: list[subprocess.Popen[bytes]] = []
    window = bed.window(lambda: [p.pid for p in running if p.poll() is None], controllers=False)
    logs = []
    for number, (argv, env) in enumerate(commands):
        log = (bed.workdir / f"run-{time.time_ns()}-{number}.log").open("wb")
        logs.append(log)
        running.append(subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT))
    codes = [p.wait() for p in running]
    figures = window.stop()
    for log in logs:
        log.close()
    if any(codes):
        tail = Path(logs[codes.index(next(c for c in codes if c))].name).read_text()[-3000:]
        raise SystemExit(f"{commands[0][0][0]} failed:\n{tail}")
    return figures


def stack(
    case: Case, tool: str, repo: str, namespace: str, labels: dict[str, str]
) -> dict[str, Any]:
    return {
        "apiVersion": "herd.suse.com/v1",
        "kind": "Stack",
        "metadata": {"name": f"{tool}-{case.name}", "namespace": namespace},
        "spec": {
            "targets": {"selector": {"matchLabels": labels}},
            "charts": [
                {
                    "name": c.name,
                    "chart": c.chart,
                    "repo": repo,
                    "version": "0.1.0",
                    "namespace": case.namespace(tool, c),
                    "dependsOn": list(c.deps),
                    "wait": True,
                    "timeout": "5m",
                }
                for c in case.charts
            ],
        },
    }


class HerdCli:
    """`herd apply` once for all clusters, as a CI job runs it."""

    name = "herd apply"

    def __init__(self, bed: Bed) -> None:
        self.bed = bed

    def _run(self, case: Case) -> Figures:
        clusters = self.bed.workdir / f"herd-clusters-{self.bed.count}.yaml"
        entries = [
            {"id": c.name, "kubeconfig": str(c.kubeconfig), "labels": self.bed.label()}
            for c in self.bed.downstream
        ]
        clusters.write_text(yaml.safe_dump(entries))
        path = self.bed.workdir / f"herd-cli-{case.name}.yaml"
        body = stack(case, "cli", self.bed.repo, "default", self.bed.label())
        path.write_text(yaml.safe_dump(body))
        herd = str(Path(sys.executable).parent / "herd")
        env = {**os.environ, "HERD_HELM": str(self.bed.helm)}
        argv = [herd, "apply", "-f", str(path), "--clusters", str(clusters)]
        return run_all([(argv, env)], self.bed)

    deploy = noop = _run


class Helmfile:
    """One helmfile with `needs:` per case, `helmfile sync` per cluster, all in parallel.

    A CI job without the helm-diff plugin reruns `sync` (helmfile's `apply` needs it): the
    no-op pass is a second `sync`, which upgrades every release to a new revision."""

    name = "helmfile"

    def __init__(self, bed: Bed, binary: Path) -> None:
        self.bed, self.binary = bed, binary

    def _file(self, case: Case) -> Path:
        releases = []
        for c in case.charts:
            namespace = case.namespace("hf", c)
            needs = [f"{case.namespace('hf', d)}/{d.name}" for d in case.charts if d.name in c.deps]
            releases.append(
                {
                    "name": c.name,
                    "namespace": namespace,
                    "chart": f"bed/{c.chart}",
                    "version": "0.1.0",
                    "wait": True,
                    "timeout": 300,
                    "createNamespace": True,
                    **({"needs": needs} if needs else {}),
                }
            )
        path = self.bed.workdir / f"helmfile-{case.name}.yaml"
        document = {"repositories": [{"name": "bed", "url": self.bed.repo}], "releases": releases}
        path.write_text(yaml.safe_dump(document))
        return path

    def _run(self, case: Case) -> Figures:
        path = self._file(case)
        commands = []
        for cluster in self.bed.downstream:
            home = self.bed.workdir / "helmfile-home" / cluster.name
            env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
            for kind in ("cache", "config", "data"):
                (home / kind).mkdir(parents=True, exist_ok=True)
                env[f"HELM_{kind.upper()}_HOME"] = str(home / kind)
            argv = [str(self.binary), "--helm-binary", str(self.bed.helm), "--file", str(path)]
            commands.append(([*argv, "sync", "--concurrency", "0"], env))
        return run_all(commands, self.bed)

    deploy = noop = _run


class HerdOperator:
    """The Herd operator (`python -m herd operator`), clusters registered Rancher-style;
    a pass is from creating the Stack to its `Deployed` status."""

    name = "herd operator"

    def __init__(self, bed: Bed, controller: Controller) -> None:
        self.bed, self.controller = bed, controller
        self.api = client.CustomObjectsApi(api_client_from_kubeconfig(bed.management.kubeconfig))

    def _roots(self) -> list[int]:
        process = self.controller.process
        return [process.pid] if process is not None else []

    def _get(self, name: str) -> dict[str, Any]:
        found: Any = self.api.get_namespaced_custom_object(
            "herd.suse.com", "v1", CONTROLLER_NS, "stacks", name
        )
        return dict(found)

    def _deployed(self, name: str, stamp: str = "") -> bool:
        body = self._get(name)
        status = body.get("status") or {}
        if stamp and status.get("reconcileAt") != stamp:
            return False
        fresh = status.get("observedGeneration") == body["metadata"].get("generation")
        return fresh and status.get("phase") == "Deployed"

    def deploy(self, case: Case) -> Figures:
        body = stack(case, "op", self.bed.repo, CONTROLLER_NS, self.bed.label())
        window = self.bed.window(self._roots, controllers=True)
        self.api.create_namespaced_custom_object(
            "herd.suse.com", "v1", CONTROLLER_NS, "stacks", body
        )
        wait_until(f"Stack {case.name} Deployed", lambda: self._deployed(body["metadata"]["name"]))
        return window.stop()

    def noop(self, case: Case) -> Figures:
        # kopf ignores herd.suse.com/* annotations, so a label wakes the Stack; the
        # annotation marks the pass's status write (benchmarks/scale.py does the same).
        name, stamp = f"op-{case.name}", f"noop-{time.time_ns()}"
        patch = {
            "metadata": {
                "labels": {"bench-pass": stamp[-8:]},
                "annotations": {"herd.suse.com/reconcile-at": stamp},
            }
        }
        time.sleep(3)  # the rollout's last status writes settle first
        window = self.bed.window(self._roots, controllers=True)
        self.api.patch_namespaced_custom_object(
            "herd.suse.com", "v1", CONTROLLER_NS, "stacks", name, patch
        )
        wait_until(f"no-op pass of {name}", lambda: self._deployed(name, stamp))
        return window.stop()


def flux_args(concurrent: int, requeue: str) -> list[str]:
    """helm-controller on loopback, without leader election or an events receiver (its
    events stay Kubernetes Events), charts from ExternalArtifacts."""
    return [
        f"--metrics-addr=127.0.0.1:{free_port()}",
        f"--health-addr=127.0.0.1:{free_port()}",
        "--events-addr=",
        "--enable-leader-election=false",
        "--feature-gates=ExternalArtifact=true",
        f"--concurrent={concurrent}",
        f"--requeue-dependency={requeue}",
    ]
