"""Fault scenario `hostile`: five hostile Stacks while another tenant deploys.

The Stacks of `e2e.testbed.hostile_bed` (an alias bomb and 900-deep YAML in crds/, 6000
objects in one manifest, a 60k-character templated value in a namespace with no grant, a
subchart that decompresses to 150 MB) and one well-behaved tenant Stack, applied together
to the real controller. Printed: the largest event-loop lag (`herd_event_loop_lag_max_seconds`
from the metrics endpoint) and the longest gap between the Lease's renewTimes (watched with
`kubectl get -w`), against the targets (250 ms, a third of the Lease), and how each Stack
ended. Callers: `benchmarks/faults.py`.
"""

from __future__ import annotations

import time

from benchmarks._faults_bed import Bed

from e2e.testbed import helpers, hostile_bed
from e2e.testbed.herd_controller import Controller

Figures = list[tuple[str, str]]
LEASE_SECONDS = hostile_bed.LEASE_SECONDS
RANCHER_NS = hostile_bed.RANCHER_NS
TIMEOUT = 300.0


def hostile_stacks(bed: Bed) -> Figures:
    hostile_bed.prepare(bed.mgmt, bed.downstream[0].kubeconfig)
    with hostile_bed.serve_charts(bed.directory / "hostile-charts") as repo:
        controller = _controller(bed)
        controller.start()
        lease = hostile_bed.LeaseWatch(bed.mgmt)
        try:
            started = time.monotonic()
            hostile = hostile_bed.hostile_stacks(repo.url)
            good = hostile_bed.good_stack(repo.url)
            for body in (*hostile, good):
                hostile_bed.apply(bed.mgmt, body)
            ended = {
                f"{b['metadata']['namespace']}/{b['metadata']['name']}": _ended(bed, b)
                for b in (good, *hostile)
            }
            took = time.monotonic() - started
            lag = hostile_bed.loop_lag(int(controller.settings["HERD_METRICS_PORT"]))
            gap = lease.longest_gap()
        finally:
            lease.stop()
            controller.stop(grace=40)
            bed.controllers.remove(controller)
    figures = [
        ("max event-loop lag (target <= 250 ms)", f"{lag * 1000:.0f} ms"),
        (
            f"longest gap between Lease renewals (target <= {LEASE_SECONDS / 3:.1f}s)",
            f"{gap:.2f}s over {len(lease.renewals)} renewals",
        ),
        ("all six Stacks settled in", f"{took:.0f}s"),
        ("Lease lost during the run", str("Lost Lease" in controller.log_text())),
    ]
    figures += [(f"Stack {name}", outcome) for name, outcome in ended.items()]
    return figures


def _controller(bed: Bed) -> Controller:
    controller = hostile_bed.controller(bed.directory / "controllers" / "hostile", bed.mgmt)
    bed.controllers.append(controller)
    return controller


def _ended(bed: Bed, body: dict[str, object]) -> str:
    try:
        found = helpers.eventually(
            "the Stack to settle",
            lambda: (
                (s := hostile_bed.status(bed.mgmt, body)).get("phase")  # type: ignore[arg-type]
                in ("Deployed", "Failed", "Degraded")
                and s
            ),
            TIMEOUT,
        )
    except AssertionError:
        return "did not settle"
    message = next((m for m in hostile_bed.messages(found) if m), "")
    return f"{found['phase']}: {message[:160]}{'…' if len(message) > 160 else ''}"
