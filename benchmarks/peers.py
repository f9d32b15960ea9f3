"""Peer benchmark: Herd (CLI and operator), helmfile and Flux on the same clusters. Prints figures.

    .venv/bin/python -m benchmarks.peers [--clusters 3 10] [--cases diamond asymmetric rag]
        [--flux-concurrent 8] [--flux-requeue-dependency 5s] [--noop-passes 3]
        [--apiservers full|light] [--keep DIR]

Not part of `make test` or CI (`make bench-peers`). helmfile is built from the Go module
proxy into ~/.cache/herd/peers on the first run (`benchmarks.peer_tools`), which also
downloads source-controller's module for its CRDs; Flux helm-controller is the user's own
build (`HERD_FLUX_HELM_CONTROLLER_BIN`, README "Performance"), and without it the Flux
column is skipped, saying why.

One test bed: a management control plane and N downstream clusters with pods
(scheduler and kwok) and an audit log. The same chart DAGs for every tool, each tool into
namespaces of its own, all charts `wait`, from the test bed's chart repository:

- diamond: a, e; b, c after a; d after b, c (rollout_bench's);
- asymmetric: `slow` (400 ConfigMaps) beside a -> b -> c (rollout_bench's);
- rag: the owner's RAG stack shape: gpu-operator; qdrant after it; ollama after both,
  each in a namespace of its own (small `app` charts stand in for the real ones).

Tools, each at 3 and 10 clusters:

- herd apply: one `herd apply` for all clusters (Helm 4 of the test bed);
- herd operator: `python -m herd operator`, clusters registered Rancher-style; from
  creating the Stack to its `Deployed` status;
- helmfile: one helmfile with `needs:` per case, `helmfile sync --concurrency 0` per
  cluster, the clusters in parallel (as a CI matrix runs it), `--helm-binary` the same Helm 4;
- flux: helm-controller, one HelmRelease per chart and cluster (`kubeConfig.secretRef`,
  `dependsOn`), from creating them to all Ready; it embeds its own Helm library (printed).
  Its charts come from ExternalArtifacts the benchmark publishes up front (source-controller
  cannot be built from the proxy; `benchmarks._peers_flux`), so Flux's figures leave out
  source-controller's work: a lower bound of Flux's cost.

Figures per tool: wall time, CPU-s (tool and helm; downstream API servers, net of their
idle rate measured just before the pass (`--idle-seconds`); their total; the management API
server apart), peak RSS of the tool's processes, downstream API
requests (audit logs), and the same for a no-op pass (herd apply / helmfile sync again; a
label change of the Stack; a reconcile request on every HelmRelease: the controllers' passes
are short, so each is run `--noop-passes` times and the median shown). Targets: Herd's wall
time <= 0.8x the fastest peer, its total CPU <= the lowest peer's, a no-op pass <= 10% of
Flux's CPU. Nothing here asserts; it measures and prints.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from benchmarks import peer_tools
from benchmarks._peers_flux import Flux
from benchmarks._peers_measure import Figures, count_requests, idle_rate
from benchmarks._peers_report import Result, machine, report
from benchmarks._peers_tools import (
    Bed,
    Case,
    Chart,
    Helmfile,
    HerdCli,
    HerdOperator,
)
from benchmarks.cli_bench import compile_bytecode

from e2e.testbed import binaries, rancher
from e2e.testbed.chartrepo import ChartRepo
from e2e.testbed.components import Shape
from e2e.testbed.controlplane import TestBed
from e2e.testbed.herd_controller import (
    CONTROLLER_NS,
    LOOPBACK_EGRESS,
    Controller,
    prepare_management,
    service_account_kubeconfig,
)

RANCHER_NS = "fleet-default"
CASES = {
    "diamond": Case(
        "diamond",
        (
            Chart("a", "app"),
            Chart("e", "app"),
            Chart("b", "app", ("a",)),
            Chart("c", "app", ("a",)),
            Chart("d", "app", ("b", "c")),
        ),
    ),
    "asymmetric": Case(
        "asym",
        (
            Chart("slow", "slow"),
            Chart("a", "app"),
            Chart("b", "app", ("a",)),
            Chart("c", "app", ("b",)),
        ),
    ),
    "rag": Case(
        "rag",
        (
            Chart("gpu-operator", "app", (), "gpu-operator"),
            Chart("qdrant", "app", ("gpu-operator",), "vector-db"),
            Chart("ollama", "app", ("gpu-operator", "qdrant"), "llm-serving"),
        ),
    ),
}


TOOLS = ("herd-apply", "herd-operator", "helmfile", "flux")
CONTROLLERS = ("herd operator", "flux")  # their no-op pass is repeated (--noop-passes)


class Tool(Protocol):
    name: str

    def deploy(self, case: Case) -> Figures: ...

    def noop(self, case: Case) -> Figures: ...


def start_bed(counts: list[int], workdir: Path, light: bool = False) -> tuple[TestBed, ChartRepo]:
    """`light`: downstream API servers without their watch cache (`Shape.light`), which
    makes every cluster-wide list read and decode all its objects from etcd: Herd's one
    list of release Secrets per cluster cost 33-41 ms of API server CPU there against
    1.5 ms with the cache (72 release Secrets, `--apiservers`), so the light shape charges
    Herd's observation 25x what a production API server does, and Flux's namespaced reads
    about 6x. The default keeps the cache."""
    names = [f"d{i:02d}" for i in range(1, max(counts) + 1)]
    shapes = {"management": Shape(pods=False)}
    shapes.update({n: Shape(light=light, pods=True, audit=True) for n in names})
    bed = TestBed.start(
        ["management", *names],
        workdir / "bed",
        binaries=binaries.ensure(),
        shapes=shapes,
        parallel=4,
        timeout=600,
    )
    return bed, ChartRepo.start(workdir / "repo")


def start_operator(bed: Bed, counts: list[int]) -> Controller:
    """install/'s RBAC and identity, the clusters registered Rancher-style (labelled for
    each round they take part in), and the controller on the test bed's Helm 4."""
    management = bed.management.kubeconfig
    prepare_management(management, [RANCHER_NS])
    clusters = [
        rancher.RancherCluster(
            c.name,
            f"c-m-{c.name}",
            c.kubeconfig,
            {f"bench-{k}": "yes" for k in counts if i < k},
        )
        for i, c in enumerate(bed.downstream)
    ]
    rancher.register_clusters(management, clusters, RANCHER_NS)
    identity = service_account_kubeconfig(management, bed.workdir / "controller" / "sa.yaml")
    settings = {
        "HERD_RANCHER_NAMESPACES": RANCHER_NS,
        "HERD_EGRESS_ALLOW_CIDRS": LOOPBACK_EGRESS,
        "HERD_HELM": str(bed.helm),  # not the helm-logging wrapper: its sh costs CPU
    }
    controller = Controller(
        "peers", bed.workdir / "controller", identity, CONTROLLER_NS, settings=settings
    )
    controller.start()
    return controller


def make_flux(bed: Bed, args: argparse.Namespace) -> Flux | str:
    helm = peer_tools.helm_controller()
    if isinstance(helm, str):
        return helm
    crds = peer_tools.ensure(peer_tools.SOURCE_CONTROLLER) / "crds"
    options = {"concurrent": args.flux_concurrent, "requeue": args.flux_requeue_dependency}
    return Flux(bed, crds, helm, options)


def _first_line(*argv: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    found = (done.stdout or done.stderr).strip().splitlines()
    return found[0] if found else "?"


def _helm_library(binary: Path) -> str:
    """The Helm module a Go binary was built with (`go version -m`)."""
    info = subprocess.run(
        ["go", "version", "-m", str(binary)], capture_output=True, text=True, check=False
    )
    found = [line.split()[2] for line in info.stdout.splitlines() if "\thelm.sh/helm/v" in line]
    return found[0] if found else "?"


def versions(bed: Bed, flux: Flux | str, helmfile: Path | None) -> list[str]:
    out, helm_library = _first_line, _helm_library
    herd = out(str(Path(sys.executable).parent / "herd"), "--version")
    lines = [
        f"herd: {herd}; helm: {out(str(bed.helm), 'version', '--short')} (herd, helmfile)",
    ]
    if helmfile is not None:
        library = helm_library(helmfile)
        said = out(str(helmfile), "--version")  # 0.0.0-dev when built without the -X flag
        lines.append(
            f"helmfile: module {peer_tools.HELMFILE.version} (`--version`: {said}; "
            f"Helm library {library})"
        )
    if isinstance(flux, Flux):
        binary = Path(flux.helm_controller)
        lines.append(
            f"flux: ExternalArtifacts (source-controller {peer_tools.SOURCE_CONTROLLER.version}"
            " CRDs; its work not counted), helm-controller "
            f"{peer_tools.HELM_CONTROLLER_VERSION} ({binary}, Helm {helm_library(binary)}); "
            f"--concurrent={flux.options['concurrent']} "
            f"--requeue-dependency={flux.options['requeue']}"
        )
    else:
        lines.append(f"flux: skipped: {flux}")
    return lines


@dataclass
class Started:
    """The tools of this run, and what must be stopped at the end."""

    tools: list[Tool] = field(default_factory=list)
    controller: Controller | None = None
    flux: Flux | str = "not asked for (--tools)"

    def stop(self) -> None:
        if isinstance(self.flux, Flux):
            self.flux.stop()
        if self.controller is not None:
            self.controller.stop(grace=20)


def start_tools(bed: Bed, args: argparse.Namespace, started: Started) -> None:
    if "herd-apply" in args.tools:
        started.tools.append(HerdCli(bed))
    if "herd-operator" in args.tools:
        started.controller = start_operator(bed, args.clusters)
        started.tools.append(HerdOperator(bed, started.controller))
    helmfile = peer_tools.ensure(peer_tools.HELMFILE) if "helmfile" in args.tools else None
    if helmfile is not None:
        started.tools.append(Helmfile(bed, helmfile))
    if "flux" in args.tools:
        started.flux = make_flux(bed, args)
        if isinstance(started.flux, Flux):
            started.tools.append(started.flux)
    for line in versions(bed, started.flux, helmfile):
        print(line, flush=True)


def measure_all(bed: Bed, args: argparse.Namespace, tools: list[Tool]) -> None:
    """Every case with every tool, per cluster count; a case's table is printed as soon as
    it is done (its requests are counted from the audit logs then)."""
    for count in args.clusters:
        bed.count = count
        bed.idle = idle_rate(bed.downstream)
        print(f"{count} clusters: their API servers idle at {bed.idle:.2f} CPU-s/s", flush=True)
        for key in args.cases:
            case = dataclasses.replace(CASES[key], name=f"{CASES[key].name}-{count}")
            results: list[Result] = []
            for tool in tools:
                deploy = tool.deploy(case)
                # A controller's no-op pass is short, in the machine's noise: the median of a few.
                passes = args.noop_passes if tool.name in CONTROLLERS else 1
                noops = tuple(tool.noop(case) for _ in range(passes))
                result = Result(key, count, len(case.charts), tool.name, deploy, noops)
                results.append(result)
                print(
                    f"  {key} x{count} {tool.name}: {deploy.wall:.2f} s, "
                    f"no-op {result.noop.wall:.2f} s",
                    flush=True,
                )
            time.sleep(2)  # the last requests of the last pass reach the audit logs
            count_requests(bed.downstream, [f for r in results for f in r.passes])
            report(results)
    bed.count = 0


def run(args: argparse.Namespace, workdir: Path) -> None:
    helm = binaries.ensure().helm
    os.environ["HERD_HELM"] = str(helm)
    compile_bytecode()  # as installed: `herd apply` does not compile Herd on each start
    if "helmfile" in args.tools:
        peer_tools.ensure(peer_tools.HELMFILE)  # before the test bed: a cold build takes minutes
    print(machine(), flush=True)
    bed_, repo = start_bed(args.clusters, workdir, light=args.apiservers == "light")
    bed = Bed(bed_, repo.url, workdir, helm, idle_seconds=args.idle_seconds)
    started = Started()
    try:
        start_tools(bed, args, started)
        measure_all(bed, args, started.tools)
    finally:
        started.stop()
        repo.stop()
        bed_.stop() if args.keep else bed_.remove()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--clusters", type=int, nargs="+", default=[3, 10])
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--tools", nargs="+", choices=TOOLS, default=list(TOOLS))
    parser.add_argument("--flux-concurrent", type=int, default=8, help="Herd's helm default")
    parser.add_argument("--flux-requeue-dependency", default="5s", help="Flux's default: 30s")
    parser.add_argument(
        "--noop-passes", type=int, default=3, help="the controllers' no-op passes (median shown)"
    )
    parser.add_argument(
        "--idle-seconds",
        type=float,
        default=3.0,
        help="the API servers' idle rate is measured this long before each pass (0: once)",
    )
    parser.add_argument(
        "--apiservers",
        choices=("full", "light"),
        default="full",
        help="downstream API servers with their watch cache (full, as in production) or "
        "without (light: less memory, for 10 clusters on a small machine)",
    )
    parser.add_argument("--keep", type=Path, help="work here and keep the logs (not a temp dir)")
    args = parser.parse_args(argv)
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        run(args, args.keep.resolve())
        return
    directory = Path(tempfile.mkdtemp(prefix="herd-peers-"))
    try:
        run(args, directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
