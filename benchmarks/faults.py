"""Fault suite of issue 11: real faults on the local test bed, one printed line per figure.

    .venv/bin/python -m benchmarks.faults [--scenarios kill,api,depart,dual,failover,fuzz,hostile]
                                          [--kills 10] [--kill-timeout 15m] [--fuzz 500]
                                          [--keep DIR]

Starts its own test bed (a Rancher-shaped management cluster and two downstream
clusters, the fixture chart repository), runs `python -m herd operator` as real
processes against it (the install/ ServiceAccount's token as identity, every helm call
logged through a HERD_HELM wrapper) and measures:

- kill: SIGKILLs of the controller's process group (controller and helm children, as a
  pod kill does) mid-rollout of a 4-chart diamond (`wait: true`, `--kill-timeout`, 15m by
  default), each while helm waits on the root release (held pending-upgrade by a node
  label the bench adds right after the kill), each followed by a restart with the same
  HERD_WORKDIR: trials converged, seconds from kill to converged (issue 26: <= Lease + 20 s
  whatever the timeout) and their phases, releases left pending-*, and secret files of
  the killed runs still on disk (see below);
- api: the management kube-apiserver stopped for 15 s mid-rollout: helm revisions
  failed/left pending, controller log lines of cancelled work, seconds to converge;
- depart: a downstream cluster relabelled out of the selector, and its Stack deleted,
  while its apiserver is down: releases left on it after it returns;
- dual: two controllers at once, a Stack of 4 charts on 2 clusters edited 4 times:
  revisions beyond 1 install + 4 upgrades per release, failed revisions, clash lines;
- failover: the active one of two controllers SIGKILLed: seconds until an edit made
  right after the kill is Deployed;
- fuzz: generated Stack bodies (CRD schema + nasty strings) through the controller:
  crashes, Stacks with a clear status, helm calls for Stacks judged invalid;
- hostile: five hostile Stacks (alias, nesting and object-count bombs, a 60k templated
  value without a grant, a decompression-bomb subchart) beside another tenant's Stack:
  the largest event-loop lag and the longest gap between Lease renewals.

"Secret files of killed runs": regular files below TMPDIR/herd-kubeconfigs-*,
TMPDIR/herd-helm-*, TMPDIR/herd-charts-* and below HERD_WORKDIR (kubeconfigs, helm homes,
chart caches) that existed right after some kill, identified by path, inode and mtime,
and still exist once the last restarted controller has converged. Files the live
controller wrote itself are not counted (printed apart). Each controller gets its own
TMPDIR, so nothing else's files are counted.

A figure that cannot be measured on the code at hand prints `n/a (reason)`; nothing here
asserts. Everything started is stopped at the end (the bed's atexit hook too).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from benchmarks import _faults_fuzz, _faults_ha, _faults_hostile, _faults_rollout
from benchmarks._faults_bed import RANCHER_NS, Bed, NotMeasured

from e2e.testbed import binaries
from e2e.testbed.chartrepo import ChartRepo
from e2e.testbed.controlplane import TestBed
from e2e.testbed.herd_controller import prepare_management

Figures = list[tuple[str, str]]
SCENARIOS = ("kill", "api", "depart", "dual", "failover", "fuzz", "hostile")
TITLES = {
    "kill": "SIGKILL of controller + helm children mid-rollout, restart",
    "api": "management API down 15 s mid-rollout",
    "depart": "downstream cluster down while it departs / while its Stack is deleted",
    "dual": "two controllers at once, 4 edits",
    "failover": "leader SIGKILLed",
    "fuzz": "generated Stack bodies",
    "hostile": "5 hostile Stacks (bombs) beside another tenant's Stack",
}


def _runners(args: argparse.Namespace) -> dict[str, Callable[[Bed], Figures]]:
    return {
        "kill": lambda bed: _faults_rollout.sigkills(bed, args.kills, timeout=args.kill_timeout),
        "api": lambda bed: _faults_rollout.management_outage(bed, args.outage),
        "depart": _faults_rollout.departures,
        "dual": _faults_ha.two_controllers,
        "failover": _faults_ha.leader_killed,
        "fuzz": lambda bed: _faults_fuzz.generated_bodies(bed, args.fuzz),
        "hostile": _faults_hostile.hostile_stacks,
    }


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.faults", description=__doc__)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma list")
    parser.add_argument("--kills", type=int, default=10, help="SIGKILL trials")
    parser.add_argument("--kill-timeout", default="15m", help="the kill scenario's chart timeout")
    parser.add_argument("--fuzz", type=int, default=500, help="generated Stack bodies")
    parser.add_argument("--outage", type=float, default=15.0, help="management outage, s")
    parser.add_argument("--keep", type=Path, help="work here and keep logs (default: temp)")
    args = parser.parse_args(argv)
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios {sorted(unknown)}; pick from {', '.join(SCENARIOS)}")
    return args


def _run_one(name: str, runner: Callable[[Bed], Figures], bed: Bed) -> None:
    print(f"\n## {name}: {TITLES[name]}", flush=True)
    started = time.monotonic()
    try:
        figures = runner(bed)
    except NotMeasured as reason:
        figures = [("figures", f"n/a ({reason})")]
    except Exception as error:  # a broken scenario must not stop the others
        detail = traceback.format_exception_only(error)[-1].strip()
        figures = [("figures", f"n/a (scenario failed: {detail[:300]})")]
        traceback.print_exc(file=sys.stderr)
    finally:
        bed.stop_controllers()
    for label, value in figures:
        print(f"{name}: {label}: {value}", flush=True)
    print(f"{name}: (scenario took {time.monotonic() - started:.0f}s)", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    directory = args.keep or Path(tempfile.mkdtemp(prefix="herd-faults-"))
    directory.mkdir(parents=True, exist_ok=True)
    print(f"# Herd fault suite ({', '.join(args.scenarios)}); work dir {directory}", flush=True)
    started = time.monotonic()
    testbed = TestBed.start(
        ["management", "downstream-1", "downstream-2"],
        directory / "testbed",
        binaries=binaries.resolve(),
    )
    try:
        with ChartRepo.start(directory / "chartrepo") as repo:
            bed = Bed(testbed, repo.url, directory, [
                testbed.clusters["downstream-1"], testbed.clusters["downstream-2"],
            ])  # fmt: skip
            prepare_management(
                bed.mgmt, [RANCHER_NS, _faults_fuzz.RANCHER_NS, _faults_hostile.RANCHER_NS]
            )
            bed.register()
            print(f"# test bed up in {time.monotonic() - started:.0f}s", flush=True)
            runners = _runners(args)
            for name in args.scenarios:
                _run_one(name, runners[name], bed)
    finally:
        testbed.stop()
        if args.keep is None:
            shutil.rmtree(directory, ignore_errors=True)
    print(f"\n# done in {time.monotonic() - started:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
