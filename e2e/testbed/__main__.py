"""`python -m e2e.testbed up|down|status`: the local test bed as a background demo.

Callers: people and the Makefile (`make demo-up` / `demo-down`). `up` starts a
management cluster and N downstream clusters, the fixture chart repository, and
registers the downstream clusters Rancher-style on the management cluster; then it
returns, leaving the processes running and recorded in `<dir>/pids`. `down` reads that
file from any later process and stops them all.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

from e2e.testbed import binaries, processes, rancher
from e2e.testbed.controlplane import TestBed
from e2e.testbed.processes import ManagedProcess, TestBedError, wait_for

MANAGEMENT = "management"
SUMMARY = "testbed.json"
_REPO_ROOT = Path(__file__).resolve().parents[2]
_CHART_REPO_TIMEOUT = 60.0


def downstream_names(count: int) -> list[str]:
    return [f"downstream-{index}" for index in range(1, count + 1)]


def rancher_cluster_id(name: str) -> str:
    """A stable Rancher-style management id (c-m-xxxxxxxx) for a cluster name."""
    return "c-m-" + hashlib.sha256(name.encode()).hexdigest()[:8]


def register_with_rancher(bed: TestBed, names: list[str]) -> None:
    """Publish the downstream clusters as provisioning.cattle.io Clusters + Secrets."""
    clusters = [
        rancher.RancherCluster(
            name=name,
            cluster_id=rancher_cluster_id(name),
            kubeconfig=bed.clusters[name].kubeconfig,
            labels={"env": "demo", "herd.test/name": name},
        )
        for name in names
    ]
    rancher.register_clusters(bed.clusters[MANAGEMENT].kubeconfig, clusters)


def start_chart_repo(workdir: Path) -> str:
    """Run the fixture chart repository as a detached process; return its URL."""
    url_file = workdir / "chartrepo.url"
    url_file.unlink(missing_ok=True)
    argv = [
        sys.executable,
        "-m",
        "e2e.testbed.chartrepo",
        "serve",
        "--dir",
        str(workdir / "chartrepo"),
        "--port-file",
        str(url_file),
    ]
    env = dict(os.environ, PYTHONPATH=str(_REPO_ROOT))
    process = ManagedProcess(
        "chartrepo", argv, workdir / "logs" / "chartrepo.log", workdir / processes.PIDFILE, env
    )
    process.start()
    wait_for("chart repository URL file", url_file.is_file, _CHART_REPO_TIMEOUT, [process])
    return url_file.read_text().strip()


def up(workdir: Path, downstream: int, chart_repo: bool, rancher: bool) -> int:
    workdir = workdir.resolve()
    if processes.recorded_alive(workdir):
        print(f"test bed in {workdir} is already up; run `down` first", file=sys.stderr)
        return 1
    # Whatever the pidfile still lists is dead (a reboot, a kill -9): start a new list.
    (workdir / processes.PIDFILE).unlink(missing_ok=True)
    names = [MANAGEMENT, *downstream_names(downstream)]
    bed = TestBed.start(names, workdir, binaries=binaries.ensure(), detach=True)
    try:
        repo_url = start_chart_repo(workdir) if chart_repo else None
        if rancher:
            register_with_rancher(bed, names[1:])
    except BaseException:
        processes.kill_recorded(workdir)
        raise
    summary: dict[str, object] = {
        "kubeconfigs": {name: str(path) for name, path in bed.kubeconfigs().items()},
        "servers": {name: cluster.server for name, cluster in bed.clusters.items()},
        "chart_repo_url": repo_url,
        "logs": str(workdir / "logs"),
    }
    (workdir / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")
    _print_summary(summary, workdir)
    return 0


def _print_summary(summary: dict[str, object], workdir: Path) -> None:
    print(f"test bed up in {workdir}")
    kubeconfigs = summary["kubeconfigs"]
    assert isinstance(kubeconfigs, dict)
    for name, path in kubeconfigs.items():
        print(f"  {name:<16} KUBECONFIG={path}")
    if summary["chart_repo_url"]:
        print(f"  chart repository {summary['chart_repo_url']}")
    print(f"  logs in {summary['logs']}; stop with: python -m e2e.testbed down --dir {workdir}")


def down(workdir: Path) -> int:
    stopped = processes.kill_recorded(workdir.resolve())
    print(f"stopped {len(stopped)} processes" + (f": {', '.join(stopped)}" if stopped else ""))
    return 0


def status(workdir: Path) -> int:
    alive = processes.recorded_alive(workdir.resolve())
    print("\n".join(alive) if alive else "nothing running")
    return 0 if alive else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m e2e.testbed")
    commands = parser.add_subparsers(dest="command", required=True)
    up_parser = commands.add_parser("up", help="start clusters and leave them running")
    up_parser.add_argument("--downstream", type=int, default=2, help="downstream clusters")
    up_parser.add_argument("--no-chart-repo", action="store_true")
    up_parser.add_argument("--no-rancher", action="store_true")
    for name, help_text in (("down", "stop what `up` started"), ("status", "list processes")):
        commands.add_parser(name, help=help_text)
    for sub in commands.choices.values():
        sub.add_argument("--dir", type=Path, default=Path(".demo"), help="working directory")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            return up(args.dir, args.downstream, not args.no_chart_repo, not args.no_rancher)
        if args.command == "down":
            return down(args.dir)
        return status(args.dir)
    except (TestBedError, binaries.BinariesMissingError, binaries.BuildError) as error:
        print(error, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
