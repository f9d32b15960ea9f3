"""CPU per release of two Herd source trees, alternated on one test bed. Prints figures.

    .venv/bin/python -m benchmarks.cpu_compare --base /tmp/base/src [--clusters 8]
        [--charts 10] [--order ABBA]

For a before/after figure on a shared, noisy machine: one test bed (`benchmarks.scale`'s:
light downstream clusters, the last one with an audit log), then for each letter of
`--order` a fresh controller (A: `--base` first on PYTHONPATH, e.g. a `git archive` of the
old commit's `src`; B: this checkout) rolls out a new Stack of `--charts` charts to every
cluster. Per rollout: releases/s, CPU-s per release by program once the pass's add-on probe
has settled (helm, the downstream apiservers, the controller, ...) and Herd's share, helm
processes and downstream API requests per release; the same net of the test bed's idle
rate (measured for `--idle-seconds` before each rollout, `benchmarks._scale_idle`).
Between rollouts the Stack is removed without uninstalling (its finalizer dropped while
no controller runs), so each controller sees its own Stack only. Not part of `make test`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import benchmarks._scale_idle as scale_idle
import benchmarks._scale_measure as measure
import yaml
from benchmarks import scale

from e2e.testbed.helpers import kubectl
from e2e.testbed.herd_controller import (
    CONTROLLER_NS,
    Controller,
    prepare_management,
    service_account_kubeconfig,
)
from herd.kube.client import api_client_from_kubeconfig


def rollout(run: scale.Run, name: str, label: str) -> dict[str, float]:
    """One Stack to every cluster; the figures of its rollout, printed and returned."""
    args = run.args
    releases = args.clusters * args.charts
    body = scale.stack_body(name, run.repo, args.charts, {"scale": "yes"}, 0)
    time.sleep(3)  # the new controller's start-up and the last Stack's removal settle
    rates = scale_idle.idle_rates(lambda: scale.cpu_by_program(run), args.idle_seconds)
    scale.line(f"{label} {name} idle", scale_idle.describe(rates, args.idle_seconds))
    before = scale.cpu_by_program(run)
    began = time.time()
    kubectl(run.management.kubeconfig, "apply", "-f", "-", stdin=yaml.safe_dump(body))
    scale.wait("convergence", lambda: run.converged({name: releases}), args.timeout, lambda: None)
    took = time.time() - began
    time.sleep(4)
    scale.settle(run.controller)
    after = scale.cpu_by_program(run)
    settled = time.time()
    used = {k: after[k] - before.get(k, 0.0) for k in after}
    total = sum(used.values())
    net = scale_idle.net(used, rates, settled - began)
    helm = [c for c in run.controller.helm_calls(began) if c.at <= settled]
    audited = run.downstream[-1]
    calls = measure.between(measure.requests(audited.audit_log, "admin"), began, settled)
    figures = {
        "releases/s": releases / took,
        "CPU-s/release": total / releases,
        **{f"{k} CPU-s/release": v / releases for k, v in used.items()},
        "Herd share %": 100 * used["herd controller"] / max(total, 1e-9),
        "net CPU-s/release": sum(net.values()) / releases,
        **{f"net {k} CPU-s/release": net[k] / releases for k in rates},
        "net Herd share %": 100 * net["herd controller"] / max(sum(net.values()), 1e-9),
        "helm processes/release": len(helm) / releases,
        "downstream requests/release": len(calls) / args.charts,
    }
    scale.line(f"{label} {name}", ", ".join(f"{k} {v:.3f}" for k, v in figures.items()))
    scale.line("  downstream requests", measure.summary(calls)[:600])
    return figures


def remove_stack(run: scale.Run, name: str) -> None:
    """Drop the Stack without uninstalling its releases: no controller runs now."""
    patch = json.dumps({"metadata": {"finalizers": None}})
    kubectl(run.management.kubeconfig, "patch", "stack", name, "-n", CONTROLLER_NS,
            "--type=merge", "-p", patch)  # fmt: skip
    kubectl(run.management.kubeconfig, "delete", "stack", name, "-n", CONTROLLER_NS,
            "--wait=false")  # fmt: skip


def compare(args: argparse.Namespace, workdir: Path) -> None:
    bed, repo = scale.start(args, workdir)
    results: dict[str, list[dict[str, float]]] = {"A": [], "B": []}
    try:
        management = bed.clusters["management"]
        scale.crds_established(management.kubeconfig)
        prepare_management(management.kubeconfig, [scale.RANCHER_NS])
        scale.register(bed, args.pod_clusters)
        identity = service_account_kubeconfig(management.kubeconfig, workdir / "controller.yaml")
        api = api_client_from_kubeconfig(management.kubeconfig)
        for i, letter in enumerate(args.order):
            source = args.base if letter == "A" else Path(__file__).resolve().parents[1] / "src"
            settings = {
                "PYTHONPATH": str(source),
                "HERD_RANCHER_NAMESPACES": scale.RANCHER_NS,
                "HERD_MAX_CLUSTERS": str(args.clusters),
                "HERD_MAX_HELM": str(args.max_helm),
                "HERD_FLEET_SECONDS": "600",
                "HERD_RESYNC_SECONDS": "3600",
            }
            controller = Controller(
                f"c{i}", workdir / f"controller-{i}", identity, CONTROLLER_NS, settings=settings
            )
            controller.start()
            run = scale.Run(args, bed, repo.url, controller, api)
            try:
                results[letter].append(rollout(run, f"r{i}-{letter.lower()}", letter))
            finally:
                controller.stop(grace=20)
            remove_stack(run, f"r{i}-{letter.lower()}")
        api.close()  # type: ignore[no-untyped-call]
    finally:
        repo.stop()
        bed.remove()
    summary(results)


def summary(results: dict[str, list[dict[str, float]]]) -> None:
    keys = list(results["A"][0]) if results["A"] else []
    for key in keys:
        a = sum(r[key] for r in results["A"]) / len(results["A"])
        b = sum(r[key] for r in results["B"]) / max(len(results["B"]), 1)
        change = f"{100 * (b - a) / a:+.0f}%" if a else "n/a"
        scale.line(f"mean {key}", f"A {a:.3f}  B {b:.3f}  ({change})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--base", type=Path, required=True, help="the A source tree (src/)")
    parser.add_argument("--clusters", type=int, default=8)
    parser.add_argument("--charts", type=int, default=10)
    parser.add_argument("--pod-clusters", type=int, default=0)
    parser.add_argument("--max-helm", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--order", default="ABBA")
    parser.add_argument("--idle-seconds", type=float, default=15, help="the bed's idle rate")
    args: Any = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="herd-cpu-compare-") as directory:
        compare(args, Path(directory))


if __name__ == "__main__":
    main()
