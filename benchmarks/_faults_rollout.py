"""Fault scenarios of one controller mid-rollout: SIGKILLs, a management outage, departures.

Callers: `benchmarks/faults.py`. Each function returns printable figures
(`(label, value)` pairs) and raises `NotMeasured` when a figure cannot be taken.
"""

from __future__ import annotations

import contextlib
import random
import time
from dataclasses import dataclass

from benchmarks import _faults_phases
from benchmarks._faults_bed import (
    IDS,
    TEAM,
    Bed,
    NotMeasured,
    charts,
    first_mutation,
    stack_body,
)

from e2e.testbed import faults, helpers
from e2e.testbed.helpers import kubectl
from e2e.testbed.herd_controller import Controller

Figures = list[tuple[str, str]]
CONVERGE_TIMEOUT = 240.0
KILL_CONVERGE_TIMEOUT = 150.0


def sigkills(
    bed: Bed, trials: int, seed: int = 11, budget: float = 600.0, timeout: str = "30s"
) -> Figures:
    """SIGKILL controller + helm children mid-rollout `trials` times, restarting each time.

    The charts have `timeout` (issue 26: 15m, the owner's gpu-operator). Each kill lands
    while `helm upgrade --wait` holds the root release pending-upgrade (the gate of
    `_faults_phases`), which is opened right after the kill: the restarted controller
    recovers it from the operation journal once it holds the Lease, not after the timeout,
    then rolls out the rest of the diamond. Trials stop early once `budget` seconds are
    spent (the figures say how many ran).
    """
    ns, apps, name = "faults-kill", "faults-kill-apps", "kill"
    controller = bed.controller("kill", ns)
    controller.start()
    bed.apply(stack_body(name, ns, _faults_phases.gated_charts(bed.repo_url, apps, 0, timeout)))
    bed.wait_converged(name, ns, apps, CONVERGE_TIMEOUT)
    rng = random.Random(seed)
    helm_at_kill = pending_at_kill = 0
    written_by_killed: set[faults.FileId] = set()
    trials_seen: list[_faults_phases.Trial] = []
    deadline = time.monotonic() + budget
    ran = 0
    for trial in range(1, trials + 1):
        if time.monotonic() > deadline:
            break
        ran = trial
        since = time.time()
        gated = _faults_phases.gated_charts(bed.repo_url, apps, trial, timeout)
        bed.apply(stack_body(name, ns, gated))
        # No helm upgrade seen in time: the kill still lands, only earlier in the pass.
        with contextlib.suppress(AssertionError):
            first_mutation(controller, since, 60)
        pending_at_kill += _faults_phases.wait_pending(bed.kubeconfigs.values(), apps)
        time.sleep(rng.uniform(0.2, 2.0))  # helm waits on the gate meanwhile
        children = controller.kill()
        killed = time.time()
        _faults_phases.open_gate(bed.downstream, trial)
        helm_at_kill += any(c.startswith("helm") for c in children)
        renewed = _faults_phases.last_renewal(controller)
        # Everything on disk now was written by a run that was killed.
        written_by_killed |= faults.secret_files(controller.tmpdir, controller.workdir)
        offset = controller.log.stat().st_size
        controller.start()
        try:
            bed.wait_converged(name, ns, apps, KILL_CONVERGE_TIMEOUT)
            trials_seen.append(
                _faults_phases.trial(controller, offset, killed, renewed, time.time())
            )
        except AssertionError:
            pass
    tally = KillTally(
        f"{len(trials_seen)}/{ran}" + (f" (budget hit, {trials} asked)" if ran < trials else ""),
        f"{helm_at_kill}/{ran}; {pending_at_kill}/{ran} with `a` pending-upgrade",
        [t.total for t in trials_seen],
        written_by_killed,
        trials_seen,
    )
    return _kill_figures(bed, controller, apps, timeout, tally)


@dataclass
class KillTally:
    converged: str
    helm_at_kill: str
    seconds: list[float]
    written_by_killed: set[faults.FileId]
    trials: list[_faults_phases.Trial]


def _kill_figures(
    bed: Bed, controller: Controller, apps: str, timeout: str, tally: KillTally
) -> Figures:
    seconds = tally.seconds
    pending = faults.pending_releases(bed.kubeconfigs, apps)
    now = faults.secret_files(controller.tmpdir, controller.workdir)
    left = tally.written_by_killed & now
    dirs = faults.secret_dirs(controller.tmpdir)
    in_tmp = sum(1 for f in left if controller.tmpdir in f.path.parents)
    crashes = len(faults.matching_lines(controller.log_text(), ("Traceback",)))
    lease = float(controller.settings["HERD_LEASE_SECONDS"])
    recovered = sum(c.verb in ("rollback", "uninstall") for c in controller.helm_calls())
    return [
        ("trials converged", tally.converged),
        ("kills that landed while helm ran", tally.helm_at_kill),
        (
            f"seconds from kill to converged, chart timeout {timeout} (median, max; "
            f"target <= Lease {lease:.0f} + 20 s, restart included)",
            f"{_median(seconds):.1f}, {max(seconds, default=0):.1f}" if seconds else "n/a",
        ),
        *_faults_phases.summary(tally.trials),
        ("phases per converged trial, s", _faults_phases.per_trial(tally.trials)),
        ("pending releases recovered (helm rollback/uninstall calls)", str(recovered)),
        ("releases left pending-*", f"{len(pending)} {pending or ''}".strip()),
        (
            "secret files of killed runs still on disk after the restarts (target 0)",
            f"{len(left)} (TMPDIR {in_tmp}, HERD_WORKDIR {len(left) - in_tmp};"
            f" {faults.describe(left)})",
        ),
        (
            "herd-kubeconfigs-/herd-helm-/herd-charts- dirs in the controller's TMPDIR",
            str(len(dirs)),
        ),
        ("live controller's own secret files (informational)", str(len(now - left))),
        ("Traceback lines in the controller log", str(crashes)),
    ]


def management_outage(bed: Bed, outage: float = 15.0) -> Figures:
    """Stop the management kube-apiserver for `outage` s while helm is upgrading."""
    ns, apps, name = "faults-api", "faults-api-apps", "api"
    controller = bed.controller("api", ns)
    controller.start()
    bed.apply(stack_body(name, ns, charts(bed.repo_url, apps, "v0")))
    bed.wait_converged(name, ns, apps, CONVERGE_TIMEOUT)
    offset = controller.log.stat().st_size
    since = time.time()
    bed.apply(stack_body(name, ns, charts(bed.repo_url, apps, "outage")))
    first_mutation(controller, since, 60)
    bed.management.stop_apiserver()
    try:
        time.sleep(outage)
    finally:  # the scenarios after this one need the management API back
        bed.management.start_apiserver()
    back = time.monotonic()
    try:
        seconds = f"{bed.wait_converged(name, ns, apps, CONVERGE_TIMEOUT):.1f}"
    except AssertionError:
        seconds = f"not converged within {CONVERGE_TIMEOUT:.0f}s"
    waited = time.monotonic() - back
    tally = faults.tally(bed.kubeconfigs, apps, since=since - 1)
    log = controller.log_text(offset)
    cancelled = faults.matching_lines(log, faults.CANCEL_PATTERNS)
    failed_passes = faults.matching_lines(log, ("Reconcile failed", "Traceback"))
    mutations = [c for c in controller.helm_calls(since) if c.mutating]
    return [
        (
            "helm revisions failed or left pending (target 0)",
            f"{tally.failed + tally.pending} (failed {tally.failed}, pending {tally.pending},"
            f" of {tally.revisions} revisions; {len(mutations)} helm upgrade calls)",
        ),
        ("controller log lines of cancelled work (target 0)", str(len(cancelled))),
        ("controller log lines 'Reconcile failed'/Traceback", str(len(failed_passes))),
        ("seconds to converge after the API returned", seconds),
        ("(wait bounded at)", f"{waited:.0f}s of {CONVERGE_TIMEOUT:.0f}s"),
    ]


def departures(bed: Bed, grace: float = 90.0) -> Figures:
    """A downstream cluster down while it leaves the selector, and while the Stack is deleted."""
    ns, apps, name = "faults-depart", "faults-depart-apps", "depart"
    down = bed.downstream[1]
    down_id = IDS[down.name]
    controller = bed.controller("depart", ns)
    controller.start()
    bed.apply(stack_body(name, ns, charts(bed.repo_url, apps, "v0", count=2, wait=False)))
    bed.wait_converged(name, ns, apps, CONVERGE_TIMEOUT)
    figures: Figures = []

    # 1. Relabelled out of the selector while its API server is down.
    down.stop_apiserver()
    try:
        bed.set_team(down, "gone")
        time.sleep(10)  # the controller sees the departure while the cluster is down
    finally:
        down.start_apiserver()
    left = _wait_empty(bed, down_id, apps, grace)
    figures.append((f"departed while down: releases left after {grace:.0f}s (target 0)", left))

    # 2. The Stack deleted while the cluster is down.
    bed.set_team(down, TEAM)
    bed.wait_converged(name, ns, apps, CONVERGE_TIMEOUT)
    down.stop_apiserver()
    try:
        kubectl(bed.mgmt, "delete", "stack", name, "-n", ns, "--wait=false")
        time.sleep(10)
    finally:
        down.start_apiserver()
    left = _wait_empty(bed, down_id, apps, grace)
    gone = _wait_gone(bed, name, ns, 30)
    if not gone:
        kubectl(
            bed.mgmt, "annotate", "stack", name, "-n", ns,
            f"herd.suse.com/orphan-clusters={down_id}", "--overwrite",
        )  # fmt: skip
        gone = _wait_gone(bed, name, ns, 60)
        how = "stuck; deleted after the orphan annotation" if gone else "stuck even when orphaned"
    else:
        how = "deleted without help"
    figures.append((f"deleted while down: releases left after {grace:.0f}s (target 0)", left))
    figures.append(("deleted while down: the Stack", how))
    return figures


def _wait_empty(bed: Bed, cluster: str, namespace: str, timeout: float) -> str:
    with contextlib.suppress(AssertionError):
        helpers.eventually(
            f"releases removed from {cluster}",
            lambda: not faults.releases(bed.kubeconfigs[cluster], namespace) or None,
            timeout,
            interval=2.0,
        )
    rows = faults.releases(bed.kubeconfigs[cluster], namespace)
    return f"{len(rows)} {sorted(rows) or ''}".strip()


def _wait_gone(bed: Bed, name: str, namespace: str, timeout: float) -> bool:
    try:
        helpers.eventually(
            "the Stack gone", lambda: not bed.stack(name, namespace), timeout, interval=2.0
        )
        return True
    except AssertionError:
        return False


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    if not ordered:
        raise NotMeasured("no value")
    return ordered[len(ordered) // 2]
