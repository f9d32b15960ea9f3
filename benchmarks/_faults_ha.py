"""Fault scenarios of two controllers: both running at once, and the leader SIGKILLed.

Callers: `benchmarks/faults.py`. Each function returns printable figures.
"""

from __future__ import annotations

import time

from benchmarks._faults_bed import Bed, NotMeasured, charts, stack_body
from benchmarks._faults_rollout import CONVERGE_TIMEOUT, Figures

from e2e.testbed import faults
from e2e.testbed.herd_controller import Controller

EDITS = 4


def two_controllers(bed: Bed, edits: int = EDITS) -> Figures:
    """Two controllers on one Stack of 4 charts on 2 clusters, edited `edits` times."""
    ns, apps, name = "faults-dual", "faults-dual-apps", "dual"
    pair = [bed.controller("dual-a", ns), bed.controller("dual-b", ns)]
    for controller in pair:
        controller.start()
    since = time.time()
    bed.apply(stack_body(name, ns, charts(bed.repo_url, apps, "v0")))
    bed.wait_converged(name, ns, apps, CONVERGE_TIMEOUT)
    for edit in range(1, edits + 1):
        bed.apply(stack_body(name, ns, charts(bed.repo_url, apps, f"edit-{edit}")))
        time.sleep(3)
    try:
        bed.wait_converged(name, ns, apps, CONVERGE_TIMEOUT)
        time.sleep(5)  # a late duplicate of the losing controller still lands in history
        ended = "Deployed"
    except AssertionError:
        stack = bed.stack(name, ns)
        ended = f"not converged: {(stack.get('status') or {}).get('phase')}"
    tally = faults.tally(bed.kubeconfigs, apps, since=since - 1)
    allowed = 1 + edits  # one install, then at most one upgrade per edit
    extra = sum(max(0, n - allowed) for n in tally.by_release.values())
    logs = "\n".join(c.log_text() for c in pair)
    clashes = faults.matching_lines(logs, faults.DUPLICATE_PATTERNS)
    active = [c.name for c in pair if any(call.mutating for call in c.helm_calls(since))]
    return [
        (
            "duplicate helm operations (target 0)",
            f"{extra + tally.failed + len(clashes)} (revisions beyond 1+{edits} per release:"
            f" {extra}, failed revisions: {tally.failed}, helm operations failed with"
            f" 'already exists'/'another operation': {len(clashes)})",
        ),
        ("controllers that ran helm upgrades", f"{len(active)} {active}"),
        ("revisions per release", str(sorted(tally.by_release.values()))),
        ("the Stack ended", ended),
    ]


def leader_killed(bed: Bed) -> Figures:
    """SIGKILL the active one of two controllers; seconds until the other deploys an edit."""
    ns, apps, name = "faults-ha", "faults-ha-apps", "ha"
    pair = [bed.controller("ha-a", ns), bed.controller("ha-b", ns)]
    for controller in pair:
        controller.start()
        time.sleep(3)  # a: first to start, so first to take a lease
    bed.apply(stack_body(name, ns, charts(bed.repo_url, apps, "v0", count=2, wait=False)))
    bed.wait_converged(name, ns, apps, CONVERGE_TIMEOUT)
    since = time.time()
    bed.apply(stack_body(name, ns, charts(bed.repo_url, apps, "v1", count=2, wait=False)))
    baseline = bed.wait_converged(name, ns, apps, CONVERGE_TIMEOUT)
    active = [c for c in pair if any(call.mutating for call in c.helm_calls(since))]
    if not active:
        raise NotMeasured("no controller ran helm for the edit")
    leader: Controller = active[0]
    standby = next(c for c in pair if c is not leader)
    note = "both active (no leader election)" if len(active) == 2 else f"leader {leader.name}"
    leader.kill()
    killed, killed_epoch = time.monotonic(), time.time()
    bed.apply(stack_body(name, ns, charts(bed.repo_url, apps, "after-kill", count=2, wait=False)))
    try:
        bed.wait_converged(name, ns, apps, CONVERGE_TIMEOUT)
        failover = f"{time.monotonic() - killed:.1f}"
    except AssertionError:
        failover = f"not converged within {CONVERGE_TIMEOUT:.0f}s"
    first = [c.at for c in standby.helm_calls(killed_epoch) if c.mutating]
    return [
        ("failover seconds (kill -> edit Deployed by the standby)", failover),
        (
            "seconds from kill to the standby's first helm upgrade",
            f"{first[0] - killed_epoch:.1f}" if first else "n/a (none)",
        ),
        ("edit -> Deployed before the kill, for comparison", f"{baseline:.1f}"),
        ("before the kill", note),
        ("HERD_LEASE_SECONDS", leader.settings.get("HERD_LEASE_SECONDS", "unset")),
    ]
