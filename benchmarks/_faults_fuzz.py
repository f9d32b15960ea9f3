"""Fault scenario: hypothesis-generated Stack bodies through the real controller.

Callers: `benchmarks/faults.py`. The bodies pass the CRD schema as Python reads it; the
real API server rejects some (counted apart). The rest target only a cluster that can
never be reached, so no chart is ever installed.
"""

from __future__ import annotations

import json
import time

from benchmarks._faults_bed import Bed
from benchmarks._faults_rollout import Figures

from e2e.testbed import fuzz_run

RANCHER_NS = "fleet-fuzz"


def generated_bodies(bed: Bed, count: int, timeout: float = 360.0) -> Figures:
    ns = "faults-fuzz"
    fuzz_run.register_dead_cluster(bed.mgmt, RANCHER_NS, bed.directory)
    controller = bed.controller("fuzz", ns, HERD_RANCHER_NAMESPACES=RANCHER_NS)
    controller.start()
    since = time.time()
    specs = fuzz_run.bodies(count, ns)
    outcome = fuzz_run.run(bed.mgmt, ns, specs, timeout)
    time.sleep(5)  # a crash a moment after the last status still counts
    verdict = fuzz_run.judge(controller, outcome, since)
    missing = sorted(set(outcome.accepted) - set(outcome.with_status()))
    by_name = {b["metadata"]["name"]: b for b in specs}
    kept = bed.directory / "fuzz-without-status.json"
    kept.write_text(json.dumps([by_name[n] for n in missing], indent=1))
    phases: dict[str, int] = {}
    for name in outcome.accepted:
        phase = (outcome.statuses.get(name) or {}).get("phase") or "(none)"
        phases[phase] = phases.get(phase, 0) + 1
    return [
        ("bodies generated (incl. 10 targeted)", str(len(specs))),
        ("rejected by the API server", str(len(outcome.rejected))),
        ("controller crashes: process exited (target 0)", str(int(verdict.crashed))),
        (
            "controller crashes: Traceback/'Reconcile failed' lines (target 0)",
            str(len(verdict.crash_lines)),
        ),
        (
            f"accepted Stacks with phase and message within {timeout:.0f}s",
            f"{len(outcome.with_status())}/{len(outcome.accepted)} (after {outcome.seconds:.0f}s)",
        ),
        (
            "accepted Stacks without a clear status (first 5)",
            f"{missing[:5]} (bodies in {kept.name} of the work dir)" if missing else "none",
        ),
        ("phases", ", ".join(f"{k} {v}" for k, v in sorted(phases.items()))),
        ("judged invalid by Herd (Failed, no rows)", str(len(outcome.invalid()))),
        (
            "helm calls for Stacks judged invalid (target 0)",
            str(len(verdict.helm_calls_for_invalid)),
        ),
        ("helm calls in all", str(verdict.helm_calls)),
    ]
