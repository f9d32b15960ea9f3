"""Scale benchmark on real control planes: N clusters x M charts x K Stacks. Prints figures.

    .venv/bin/python -m benchmarks.scale [--clusters 20] [--charts 20] [--stacks 1]
        [--pod-clusters 2] [--max-helm 8]

Not part of `make test` or CI: 20 control planes take most of this machine (about 270
MiB each; the script refuses to start with less than 14 GiB available, unless --force).

The test bed: one shared etcd; a management cluster whose apiserver writes an audit log;
N light downstream clusters (`e2e.testbed.components.Shape`: tuned apiserver, trimmed
controller manager, no scheduler or kwok), of which the first `--pod-clusters` also run
the scheduler and kwok, so pods bind. Clusters are registered Rancher-style (provisioning
Clusters and their kubeconfig Secrets in fleet-default). The real controller
(`python -m herd operator`, `e2e.testbed.herd_controller`) runs as the install/
ServiceAccount; every helm call goes through a logging wrapper (HERD_HELM).

K Stacks of M charts (the fixture chart `app`, zero replicas, `wait: true`) target every
cluster; one more Stack of one chart with a running pod targets the pod clusters. Figures,
one per line: time to converge and releases per second; controller peak RSS; Stack object
size; status writes per rollout; management API requests of a no-op pass (from the audit
log: real requests of the controller's identity) and the helm processes it started; RSS
per downstream cluster. Targets are printed next to the figures, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import benchmarks._scale_idle as scale_idle
import benchmarks._scale_measure as measure
import yaml
from kubernetes import client

from e2e.testbed import binaries, rancher
from e2e.testbed.chartrepo import ChartRepo
from e2e.testbed.components import LIGHT_SHAPE, Shape
from e2e.testbed.controlplane import Cluster, TestBed
from e2e.testbed.helpers import kubectl
from e2e.testbed.herd_controller import (
    CONTROLLER_NS,
    ROOT,
    Controller,
    prepare_management,
    service_account_kubeconfig,
)
from herd.kube.client import api_client_from_kubeconfig

GROUP, VERSION, PLURAL = "herd.suse.com", "v1", "stacks"
RANCHER_NS = "fleet-default"
MIN_AVAILABLE = 14 * 1024**3
GIB = 1024**3


def line(figure: str, value: str, target: str = "") -> None:
    print(f"{figure:<44} {value}{f'   (target {target})' if target else ''}", flush=True)


def stack_body(name: str, repo: str, charts: int, selector: dict[str, str], pods: int) -> Any:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Stack",
        "metadata": {"name": name, "namespace": CONTROLLER_NS},
        "spec": {
            "targets": {"selector": {"matchLabels": selector}},
            "charts": [
                {
                    "name": f"c{j:02d}",
                    "chart": "app",
                    "repo": repo,
                    "version": "0.1.0",
                    "namespace": name,
                    "values": {"inline": {"replicaCount": pods}},
                    "wait": True,
                    "timeout": "5m",
                }
                for j in range(charts)
            ],
        },
    }


@dataclass
class Run:
    args: argparse.Namespace
    bed: TestBed
    repo: str
    controller: Controller
    api: client.ApiClient
    idle: dict[str, float] = field(default_factory=dict)  # the bed's, CPU-s/s by program

    @property
    def management(self) -> Cluster:
        return self.bed.clusters["management"]

    @property
    def downstream(self) -> list[Cluster]:
        return [c for name, c in self.bed.clusters.items() if name != "management"]

    def stack(self, name: str) -> dict[str, Any]:
        objects = client.CustomObjectsApi(self.api)
        found: dict[str, Any] = objects.get_namespaced_custom_object(
            GROUP, VERSION, CONTROLLER_NS, PLURAL, name
        )
        return found

    def converged(self, stacks: dict[str, int]) -> bool:
        for name, releases in stacks.items():
            body = self.stack(name)
            status = body.get("status") or {}
            if status.get("observedGeneration") != body["metadata"].get("generation"):
                return False
            if (status.get("deploymentCounts") or {}).get("Deployed", 0) != releases:
                return False
            if status.get("phase") != "Deployed":
                return False
        return True


def wait(what: str, probe: Callable[[], bool], timeout: float, sample: Callable[[], None]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sample()
        if probe():
            return
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


def start(args: argparse.Namespace, workdir: Path) -> tuple[TestBed, ChartRepo]:
    names = [f"d{i:02d}" for i in range(args.clusters)]
    shapes: dict[str, Shape] = {"management": Shape(pods=False, audit=True)}
    for i, name in enumerate(names):
        shapes[name] = Shape(light=True, pods=True) if i < args.pod_clusters else LIGHT_SHAPE
    # The last cluster's apiserver writes an audit log: the requests per release there.
    shapes[names[-1]] = Shape(light=True, pods=names[-1] in names[: args.pod_clusters], audit=True)
    started = time.monotonic()
    bed = TestBed.start(
        ["management", *names],
        workdir / "bed",
        binaries=binaries.ensure(),
        shapes=shapes,
        parallel=4,
        timeout=600,
    )
    line("test bed start", f"{time.monotonic() - started:.0f} s for {len(names) + 1} clusters")
    return bed, ChartRepo.start(workdir / "repo")


def crds_established(kubeconfig: Path, timeout: float = 120) -> None:
    """Apply the CRDs and wait for Established by polling: `kubectl wait` right after the
    apply fails while the CRD has no conditions yet (seen on a loaded machine)."""
    kubectl(kubeconfig, "apply", "-f", str(ROOT / "crds"))
    path = "jsonpath={.status.conditions[?(@.type=='Established')].status}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = kubectl(kubeconfig, "get", "crd", "stacks.herd.suse.com", "-o", path, check=False)
        if out.strip() == "True":
            return
        time.sleep(0.5)
    raise SystemExit("the Stack CRD did not become Established")


def register(bed: TestBed, pod_clusters: int) -> None:
    management = bed.clusters["management"].kubeconfig
    clusters = [
        rancher.RancherCluster(
            name,
            f"c-m-{name}",
            cluster.kubeconfig,
            {"scale": "yes", **({"pods": "yes"} if i < pod_clusters else {})},
        )
        for i, (name, cluster) in enumerate(
            (n, c) for n, c in bed.clusters.items() if n != "management"
        )
    ]
    rancher.register_clusters(management, clusters, RANCHER_NS)


def cpu_by_program(run: Run) -> dict[str, float]:
    """CPU seconds so far: each test-bed program summed over clusters, the controller
    alone, and helm (the controller's waited-for children)."""
    found: dict[str, float] = {}
    for cluster in run.bed.clusters.values():
        for process in cluster.processes:
            if process.pid is not None:
                program = process.name.split("/")[-1]
                found[program] = found.get(program, 0.0) + measure.cpu_seconds(process.pid)
    if run.bed.etcd is not None and run.bed.etcd.process.pid is not None:
        found["etcd"] = measure.cpu_seconds(run.bed.etcd.process.pid)
    pid = run.controller.process.pid if run.controller.process else 0
    found["herd controller"] = measure.cpu_seconds(pid)
    found["helm"] = measure.cpu_seconds(pid, children=True) - found["herd controller"]
    return found


def cpu_report(
    before: dict[str, float],
    after: dict[str, float],
    releases: int,
    what: str = "in the rollout",
    idle: tuple[dict[str, float], float] | None = None,
) -> None:
    """CPU-s per release by program (helm, each test-bed program summed over clusters, the
    controller), the total, and the controller's share of it; with `idle` (the bed's idle
    rates and the window's seconds) the same net of the bed's idle too."""
    used = {k: after[k] - before.get(k, 0.0) for k in after}
    line(f"CPU per release {what}", scale_idle.per_release(used, releases))
    if idle is not None:
        net = scale_idle.net(used, *idle)
        line("  net of the bed's idle rate", scale_idle.per_release(net, releases))


def settle(controller: Controller, quiet: float = 4.0, timeout: float = 120.0) -> None:
    """Wait until the controller started no helm process for `quiet` seconds (the pass's
    add-on probe runs after the status says Deployed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        calls = controller.helm_calls(time.time() - quiet)
        if not calls:
            return
        time.sleep(0.5)


def helm_started(controller: Controller, since: float, until: float) -> int:
    return len([c for c in controller.helm_calls(since) if c.at <= until])


def settled_figures(
    run: Run, began: float, took: float, before: dict[str, float], releases: int
) -> None:
    """CPU, helm processes and downstream requests per release once the pass's add-on
    probe is done too (it runs after the status says Deployed)."""
    args = run.args
    time.sleep(4)
    settle(run.controller)
    settled = time.time()
    after = cpu_by_program(run)
    idle = (run.idle, time.time() - began)
    cpu_report(before, after, releases, "with the pass's probe (settled)", idle)
    line("  settled", f"{settled - began - took:.1f} s after convergence")
    helm_calls = [c for c in run.controller.helm_calls(began) if c.at <= settled]
    line("helm processes per release (settled)", f"{len(helm_calls) / releases:.2f}")
    audited = run.downstream[-1]
    calls = measure.between(measure.requests(audited.audit_log, "admin"), began, settled)
    line(
        f"downstream API requests per release ({audited.name})",
        f"{len(calls) / args.charts:.1f}: {measure.summary(calls)[:400]}",
    )


def run(args: argparse.Namespace, workdir: Path) -> None:
    bed, repo = start(args, workdir)
    try:
        management = bed.clusters["management"]
        crds_established(management.kubeconfig)
        prepare_management(management.kubeconfig, [RANCHER_NS])
        register(bed, args.pod_clusters)
        identity = service_account_kubeconfig(
            management.kubeconfig, workdir / "controller" / "controller.yaml"
        )
        settings = {
            "HERD_RANCHER_NAMESPACES": RANCHER_NS,
            "HERD_MAX_CLUSTERS": str(args.clusters),
            "HERD_MAX_HELM": str(args.max_helm),
            "HERD_MAX_ROWS": str(args.max_rows),
            # The fleet poll lists the inventory on its own; slow it so that a pass's
            # requests are the pass's (its cost per poll is printed from the pass).
            "HERD_FLEET_SECONDS": "600",
            "HERD_RESYNC_SECONDS": "3600",
        }
        controller = Controller(
            "scale", workdir / "controller", identity, CONTROLLER_NS, settings=settings
        )
        controller.start()
        api = api_client_from_kubeconfig(management.kubeconfig)
        try:
            measure_run(Run(args, bed, repo.url, controller, api))
        finally:
            api.close()  # type: ignore[no-untyped-call]
            controller.stop(grace=20)
    finally:
        repo.stop()
        bed.stop() if args.keep else bed.remove()


def measure_run(run: Run) -> None:
    args = run.args
    stacks = {f"scale-{k}": args.clusters * args.charts for k in range(args.stacks)}
    bodies = [stack_body(name, run.repo, args.charts, {"scale": "yes"}, 0) for name in stacks]
    if args.pod_clusters:
        stacks["pods"] = args.pod_clusters
        bodies.append(stack_body("pods", run.repo, 1, {"pods": "yes"}, 1))
    releases = sum(stacks.values())
    pid = run.controller.process.pid if run.controller.process else 0
    peak = [0]

    def sample() -> None:
        peak[0] = max(peak[0], measure.memory(pid)[1])

    run.idle = scale_idle.idle_rates(lambda: cpu_by_program(run), args.idle_seconds)
    line("idle CPU of the test bed before", scale_idle.describe(run.idle, args.idle_seconds))
    cpu_before, machine_before = cpu_by_program(run), measure.machine_cpu()
    began = time.time()
    kubectl(run.management.kubeconfig, "apply", "-f", "-", stdin=yaml.safe_dump_all(bodies))
    wait("convergence", lambda: run.converged(stacks), args.timeout, sample)
    took = time.time() - began
    cpu_after, machine_after = cpu_by_program(run), measure.machine_cpu()
    rate = releases / took
    line(
        f"converge {releases} releases",
        f"{took:.1f} s, {rate:.2f} releases/s",
        ">= 4 releases/s" if releases >= 400 else "",
    )
    cpu_report(cpu_before, cpu_after, releases, idle=(run.idle, time.time() - began))
    settled_figures(run, began, took, cpu_before, releases)
    busy = machine_after[0] - machine_before[0]
    total = machine_after[1] - machine_before[1]
    ours = sum(cpu_after.values()) - sum(cpu_before.values())
    line(
        "machine CPU in the rollout",
        f"{100 * busy / total:.0f}% busy, this benchmark {100 * ours / total:.0f}% "
        f"(the rest: other programs); {os.cpu_count()} cores",
    )
    rollout_requests(run, stacks, began, took)
    noop_passes(run, stacks, sample)
    idle_and_memory(run, peak, sample)


def rollout_requests(run: Run, stacks: dict[str, int], began: float, took: float) -> None:
    """What the rollout asked for: helm processes, status writes, management API requests;
    and the largest Stack object after it."""
    helm = [c for c in run.controller.helm_calls(began) if c.at <= began + took]
    verbs: dict[str, int] = {}
    for call in helm:
        verbs[call.verb] = verbs.get(call.verb, 0) + 1
    line("helm processes in the rollout", ", ".join(f"{n}x {v}" for v, n in sorted(verbs.items())))
    audit = measure.requests(run.management.audit_log)
    window = measure.between(audit, began, began + took)
    writes = [r for r in window if r.resource == "stacks" and r.subresource == "status"]
    line("status writes per rollout", f"{len(writes) / len(stacks):.1f} per Stack ({len(writes)})")
    line("management API requests in the rollout", f"{len(window)}: {measure.summary(window)}")

    sizes = {name: len(json.dumps(run.stack(name)).encode()) for name in stacks}
    largest = max(sizes, key=lambda n: sizes[n])
    line("Stack object size", f"{sizes[largest] / 1024:.1f} KiB ({largest})", "<= 100 KiB")


def noop_passes(run: Run, stacks: dict[str, int], sample: Callable[[], None]) -> None:
    """Two no-op passes: one Stack is woken; nothing changed anywhere."""
    name = next(iter(stacks))
    time.sleep(3)  # let status writes and kopf's own patches of the rollout settle
    for attempt in range(2):
        stamp = f"noop-{attempt}-{time.time():.0f}"
        started = time.time()
        # kopf ignores herd.suse.com/* annotations (its own storage prefix), so the label
        # change is what wakes the Stack; the annotation marks the pass's status write.
        patch = {
            "metadata": {
                "labels": {"scale-pass": str(attempt)},
                "annotations": {"herd.suse.com/reconcile-at": stamp},
            }
        }
        kubectl(
            run.management.kubeconfig, "patch", "stack", name, "-n", CONTROLLER_NS,
            "--type=merge", "-p", json.dumps(patch),
        )  # fmt: skip
        wait(
            "the no-op pass",
            lambda stamp=stamp: (run.stack(name).get("status") or {}).get("reconcileAt") == stamp,
            120,
            sample,
        )
        ended = time.time()
        time.sleep(2)  # requests the pass makes after its status write (kopf's patch)
        calls = measure.between(measure.requests(run.management.audit_log), started, ended + 2)
        # Not the pass's: leader election renews its Lease every few seconds, and kopf
        # patches its diff base after the label change that woke the Stack.
        aside = [
            c
            for c in calls
            if c.resource == "leases" or (c.resource, c.subresource) == ("stacks", "")
        ]
        own = [c for c in calls if c not in aside]
        line(
            f"no-op pass {attempt + 1} ({stacks[name]} releases)",
            f"{ended - started:.2f} s, {helm_started(run.controller, started, ended + 2)} helm "
            f"processes, {len(own)} management API requests: {measure.summary(own)}",
            "<= 2 s, 0 helm, <= 5 requests",
        )
        line("  beside it (not the pass's)", measure.summary(aside) or "none")


def idle_and_memory(run: Run, peak: list[int], sample: Callable[[], None]) -> None:
    """Idle CPU after the passes, the controller's peak RSS, the clusters' and etcd's RSS."""
    quiet = cpu_by_program(run)
    time.sleep(10)
    idle = sum(cpu_by_program(run).values()) - sum(quiet.values())
    line("idle CPU of the test bed and controller", f"{idle / 10:.2f} cores")
    sample()
    line("controller peak RSS", f"{peak[0] / measure.MIB:.0f} MiB", "<= 200 MiB")
    now, high = measure.cluster_memory(run.downstream)
    line("RSS per downstream cluster", f"{now:.0f} MiB (peak {high:.0f} MiB)")
    etcd = run.bed.etcd
    if etcd is not None and etcd.process.pid is not None:
        line("shared etcd RSS", f"{measure.memory(etcd.process.pid)[0] / measure.MIB:.0f} MiB")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--clusters", type=int, default=20)
    parser.add_argument("--charts", type=int, default=20)
    parser.add_argument("--stacks", type=int, default=1)
    parser.add_argument("--pod-clusters", type=int, default=2)
    parser.add_argument("--max-helm", type=int, default=8)
    parser.add_argument("--max-rows", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=1200)
    parser.add_argument("--idle-seconds", type=float, default=15, help="the bed's idle rate")
    parser.add_argument("--force", action="store_true", help="start with < 14 GiB available")
    parser.add_argument("--keep", type=Path, help="work here and keep the logs (not a temp dir)")
    args = parser.parse_args(argv)
    available = measure.available_memory()
    line("memory available at start", f"{available / GIB:.1f} GiB")
    if available < MIN_AVAILABLE and not args.force:
        sys.exit("less than 14 GiB available: wait, or pass --force (smaller --clusters)")
    if args.keep:
        run(args, args.keep.resolve())
        return
    with tempfile.TemporaryDirectory(prefix="herd-scale-") as directory:
        run(args, Path(directory))


if __name__ == "__main__":
    main()
