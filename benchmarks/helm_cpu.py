"""Where one helm process's CPU goes, per command, on one real test-bed cluster. Prints figures.

    .venv/bin/python -m benchmarks.helm_cpu [--rounds 8]

Not part of `make test`. One light control plane with an audit log; the fixture chart
`app` (zero replicas). Each command runs `--rounds` times; per run it prints helm's CPU
(user + system of the child), the apiserver's CPU and the API requests helm made (from the
audit log), so the figures separate helm's start-up (`version`), chart load and render
(`template`), a release read (`get manifest`), and an install/upgrade with `--wait`, with
the client-go discovery cache (`KUBECACHEDIR`) cold (a fresh directory each run, what a
helm without a usable cache does) or warm (one directory for every run on the cluster).
Also the cost of reading the release Secret directly (Herd's `herd.helm.release_secret`).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import benchmarks._scale_measure as measure
from kubernetes import client

from e2e.testbed import binaries, fixture_charts
from e2e.testbed.chartrepo import helm_binary
from e2e.testbed.components import Shape
from e2e.testbed.controlplane import Cluster, TestBed
from e2e.testbed.helpers import kubectl
from herd.helm.environment import GO_GC
from herd.helm.release_secret import read_release
from herd.kube.client import api_client_from_kubeconfig

NAMESPACE = "bench"


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def line(figure: str, value: str) -> None:
    print(f"{figure:<44} {value}", flush=True)


def measured(
    name: str, cluster: Cluster, rounds: int, once: Callable[[int], None], *, own: bool = False
) -> None:
    """Run `once` `rounds` times; print the mean CPU of helm (or of this process: `own`),
    of the apiserver, and the mean number of API requests."""
    apiserver = cluster.apiserver.pid or 0
    began = time.time()
    helm_before, api_before = children_cpu(), measure.cpu_seconds(apiserver)
    own_before = time.process_time()
    for i in range(rounds):
        once(i)
    helm = (time.process_time() - own_before) if own else children_cpu() - helm_before
    api = measure.cpu_seconds(apiserver) - api_before
    time.sleep(1.5)  # the audit log is written asynchronously
    calls = measure.between(measure.requests(cluster.audit_log, "admin"), began, time.time())
    line(
        name,
        f"{'herd' if own else 'helm'} {1000 * helm / rounds:.0f} ms, apiserver "
        f"{1000 * api / rounds:.0f} ms, {len(calls) / rounds:.1f} requests "
        f"({measure.summary(calls)})",
    )


def run(args: argparse.Namespace, workdir: Path) -> None:
    shapes = {"one": Shape(light=True, pods=False, audit=True)}
    bed = TestBed.start(["one"], workdir / "bed", binaries=binaries.ensure(), shapes=shapes)
    try:
        measure_commands(args.rounds, bed.clusters["one"], workdir)
    finally:
        bed.remove()


def measure_commands(rounds: int, cluster: Cluster, workdir: Path) -> None:
    staged = fixture_charts.stage(workdir / "charts")
    chart = str(next(p for p in staged if p.name == "app-0.1.0"))
    home = workdir / "home"
    warm = workdir / "kube-warm"
    kubeconfig = f"--kubeconfig={cluster.kubeconfig}"

    def helm(*argv: str, cache: Path | None = None, go: dict[str, str] | None = None) -> bytes:
        env = {
            **(go or {}),
            "HOME": str(home),
            "PATH": "/usr/bin:/bin",
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data"),
            "KUBECACHEDIR": str(cache or Path(tempfile.mkdtemp(dir=workdir))),
        }
        done = subprocess.run([helm_binary(), *argv], env=env, capture_output=True, check=True)
        return done.stdout

    install = ["upgrade", "--install", "-n", NAMESPACE, "--create-namespace", "--wait=watcher"]
    values = ["--set", "replicaCount=0", kubeconfig]
    helm(*install, *values, "--", "r0", chart)  # the namespace exists from here on
    line("helm", helm("version", "--template={{.Version}}").decode())
    measured("version", cluster, rounds, lambda i: helm("version"))
    measured("template (client only)", cluster, rounds, lambda i: helm("template", "x", chart))
    measured(
        "get manifest",
        cluster,
        rounds,
        lambda i: helm("get", "manifest", "-n", NAMESPACE, kubeconfig, "--", "r0"),
    )
    measured(
        "upgrade --install --wait, cold cache",
        cluster,
        rounds,
        lambda i: helm(*install, *values, "--", f"cold{i}", chart),
    )
    measured(
        "upgrade --install --wait, no OpenAPI check",
        cluster,
        rounds,
        lambda i: helm(*install, *values, "--disable-openapi-validation", "--", f"n{i}", chart),
    )
    helm(*install, *values, "--", "w", chart, cache=warm)
    measured(
        "upgrade --install --wait, warm cache",
        cluster,
        rounds,
        lambda i: helm(*install, *values, "--", f"warm{i}", chart, cache=warm),
    )
    herd = [*install, *values, "--disable-openapi-validation"]  # as Herd runs it
    measure_gc(cluster, rounds, lambda i, go: helm(*herd, "--", f"gc{i}", chart, cache=warm, go=go))
    herd = [a for a in herd if a not in ("-n", NAMESPACE, "--create-namespace")]
    measure_namespace(cluster, rounds, lambda *a: helm(*herd, *a, "--", "r", chart, cache=warm))
    measure_direct_read(cluster, rounds)


def measure_gc(cluster: Cluster, rounds: int, once: Callable[[int, dict[str, str]], None]) -> None:
    """Herd's upgrade with Go's default collector and with the one Herd gives helm
    (`herd.helm.environment.GO_GC`), alternated round by round so that the machine's other
    work falls on both alike."""
    cpu = {"default": 0.0, "herd": 0.0}
    for i in range(rounds):
        for name, go in (("default", {}), ("herd", dict(GO_GC))):
            before = children_cpu()
            once(2 * i + (name == "herd"), go)
            cpu[name] += children_cpu() - before
    settings = " ".join(f"{k}={v}" for k, v in GO_GC.items())
    line(
        "upgrade as Herd runs it, Go GC",
        f"default {1000 * cpu['default'] / rounds:.0f} ms, {settings} "
        f"{1000 * cpu['herd'] / rounds:.0f} ms (helm CPU, alternated)",
    )


def measure_namespace(cluster: Cluster, rounds: int, herd: Callable[..., bytes]) -> None:
    """An install into a new namespace with helm's --create-namespace (helm validates the
    Namespace against the API server's OpenAPI v3 documents) and into one made beforehand
    (as Herd does: `ClusterHelm._ensure_namespace`), alternated; helm and apiserver CPU."""
    apiserver = cluster.apiserver.pid or 0
    cpu = {"--create-namespace": [0.0, 0.0], "made beforehand": [0.0, 0.0]}
    for i in range(rounds):
        for way, spent in cpu.items():
            namespace = f"ns{i}-{len(way)}"
            flags = ["--create-namespace"] if way.startswith("--") else []
            if not flags:
                kubectl(cluster.kubeconfig, "create", "namespace", namespace)
            helm_before, api_before = children_cpu(), measure.cpu_seconds(apiserver)
            herd(f"--namespace={namespace}", *flags)
            spent[0] += children_cpu() - helm_before
            spent[1] += measure.cpu_seconds(apiserver) - api_before
    shown = ", ".join(
        f"{way}: helm {1000 * h / rounds:.0f} ms, apiserver {1000 * a / rounds:.0f} ms"
        for way, (h, a) in cpu.items()
    )
    line("install into a new namespace", f"{shown} (alternated)")


def measure_direct_read(cluster: Cluster, rounds: int) -> None:
    """Herd's own read of release `r0`'s Secret (`herd.helm.release_secret`)."""
    api = api_client_from_kubeconfig(cluster.kubeconfig)
    try:
        core = client.CoreV1Api(api)
        measured(
            "read the release Secret (Herd, direct)",
            cluster,
            rounds,
            lambda i: read_release(core, NAMESPACE, "r0", None),
            own=True,
        )
    finally:
        api.close()  # type: ignore[no-untyped-call]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="herd-helm-cpu-") as directory:
        run(args, Path(directory))


if __name__ == "__main__":
    main()
