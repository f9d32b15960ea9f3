"""The CLI's fixed costs (issue 26): `herd apply` of a 3-chain against plain Helm 4. Prints.

    .venv/bin/python -m benchmarks.cli_bench [--rounds 3] [--compare SRC]

On one test-bed cluster (real API server, real Helm 4, the fixture chart repository), per
round, into fresh namespaces:

- `herd apply`: a new process (`.venv/bin/herd apply -f stack.yaml --kubeconfig ...`) of a
  Stack a -> b -> c of the small `app` chart, `wait: true`: start-up included;
- the loop a user writes instead: three `helm upgrade --install --wait=watcher` of the same
  charts, one after the other (the chain needs them in order).

Both use the test bed's Helm 4 (`HERD_HELM`), as Herd would after `pip install` with Helm 4
on PATH. Printed: both wall times per round, their medians and the ratio (target <= 1.5x),
and `herd --version`'s wall time (Python start-up and imports). Nothing asserts.

`--compare SRC` also runs `herd apply` from another source tree (`SRC/src` first on
`PYTHONPATH`, e.g. `git archive main src | tar -x -C /tmp/base`) in the same rounds, into
namespaces of its own, so a change is measured against its base on the same machine load.

The bytecode of Herd and its dependencies is compiled first (`compileall`), as `pip install`
does: with PYTHONDONTWRITEBYTECODE set, an editable checkout would otherwise compile about
a thousand modules on every start (a quarter second of CPU).
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import site
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from e2e.testbed import binaries
from e2e.testbed.chartrepo import ChartRepo
from e2e.testbed.controlplane import TestBed

HERD = str(Path(sys.executable).parent / "herd")
CHAIN = {"a": [], "b": ["a"], "c": ["b"]}


def stack_file(path: Path, repo: str, namespace: str) -> Path:
    charts = [
        {
            "name": name, "chart": "app", "repo": repo, "version": "0.1.0",
            "namespace": namespace, "dependsOn": deps, "wait": True, "timeout": "2m",
        }
        for name, deps in CHAIN.items()
    ]  # fmt: skip
    body = {
        "apiVersion": "herd.suse.com/v1",
        "kind": "Stack",
        "metadata": {"name": f"cli-{namespace}", "namespace": "default"},
        "spec": {"targets": {"clusterIds": ["bench"]}, "charts": charts},
    }
    path.write_text(yaml.safe_dump(body))
    return path


def timed(argv: list[str]) -> float:
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    took = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"{argv[:3]} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return took


def herd_apply(
    workdir: Path, kubeconfig: Path, repo: str, namespace: str, source: Path | None = None
) -> float:
    """One `herd apply` process; `source`: a source tree whose `src` is imported instead."""
    stack = stack_file(workdir / f"{namespace}.yaml", repo, namespace)
    argv = [HERD, "apply", "-f", str(stack), "--kubeconfig", f"{kubeconfig}=bench"]
    if source is None:
        return timed(argv)
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(source / "src")
    try:
        return timed(argv)
    finally:
        if saved is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = saved


def helm_loop(helm: str, kubeconfig: Path, repo: str, namespace: str) -> float:
    started = time.monotonic()
    for name in CHAIN:
        timed([
            helm, "--kubeconfig", str(kubeconfig), "upgrade", "--install", name, "app",
            "--repo", repo, "--version", "0.1.0", "-n", namespace, "--create-namespace",
            "--wait=watcher", "--timeout", "2m",
        ])  # fmt: skip
    return time.monotonic() - started


def rounds(
    workdir: Path, kubeconfig: Path, repo: str, helm: str, count: int, compare: Path | None
) -> dict[str, list[float]]:
    """Each round runs every contender once, in an order that rotates (load drifts)."""
    runs: dict[str, Callable[[str], float]] = {
        "herd apply": lambda ns: herd_apply(workdir, kubeconfig, repo, f"herd-{ns}"),
        "helm loop": lambda ns: helm_loop(helm, kubeconfig, repo, f"loop-{ns}"),
    }
    if compare is not None:
        runs["base herd apply"] = lambda ns: herd_apply(
            workdir, kubeconfig, repo, f"base-{ns}", compare
        )
    times: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for number in range(1, count + 1):
        shift = (number - 1) % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(runs[name](str(number)))
        loop = times["helm loop"][-1]
        print(
            f"round {number}: "
            + "   ".join(f"{n} {t[-1]:6.2f} s ({t[-1] / loop:4.2f}x)" for n, t in times.items())
        )
    return times


def compile_bytecode(*more: Path) -> None:
    """Compile Herd's and its dependencies' bytecode, as `pip install` does: an editable
    checkout run with PYTHONDONTWRITEBYTECODE would compile Herd's modules on every start
    (a quarter to a third of a CPU-second that an installed `herd` never pays)."""
    import herd  # noqa: PLC0415 (only to find the package's source)

    for directory in (Path(herd.__file__).parent, *map(Path, site.getsitepackages()), *more):
        compileall.compile_dir(directory, quiet=1, workers=1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compare", type=Path, metavar="SRC", help="a base source tree")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="herd-cli-bench-"))
    compile_bytecode(*([args.compare / "src"] if args.compare is not None else []))
    built = binaries.resolve()
    helm = str(built.helm)
    os.environ["HERD_HELM"] = helm
    print(f"helm: {subprocess.check_output([helm, 'version', '--short'], text=True).strip()}")
    version = [timed([HERD, "--version"]) for _ in range(3)]
    print(f"herd --version           median {statistics.median(version):6.2f} s")
    bed = TestBed.start(["bench"], workdir / "bed", binaries=built)
    try:
        with ChartRepo.start(workdir / "repo") as repo:
            kubeconfig = bed.clusters["bench"].kubeconfig
            times = rounds(workdir, kubeconfig, repo.url, helm, args.rounds, args.compare)
    finally:
        bed.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    loop = statistics.median(times["helm loop"])
    for name in (n for n in times if n != "helm loop"):
        print(
            f"3-chain, wait, 1 cluster: {name} median {statistics.median(times[name]):6.2f} s, "
            f"3 x helm --wait=watcher median {loop:6.2f} s, "
            f"ratio {statistics.median(times[name]) / loop:5.2f}x (target <= 1.5x)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
