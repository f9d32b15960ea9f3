"""The kill scenario's gate, and where the time goes from a SIGKILL to converged.

Callers: `benchmarks/_faults_rollout.sigkills`.

The gate makes each kill land while helm waits on a pending release, the case recovery is
for: the root chart `a` is the `gpu-operator` stand-in (`timeout: 15m`, as the owner's),
and each trial pins its pods to a node label no node has yet (`herd.test/gate-<trial>`),
so `helm upgrade --wait` holds `a` pending-upgrade until the bench kills the controller
and then labels the nodes (`open_gate`, as `e2e/test_recovery.py` does).

Each trial's moments come from outside
Herd's code: the restarted controller's log lines (kopf's `[asctime]` prefix, this
machine's clock), the helm wrapper's call log (epoch seconds) and the killed holder's last
Lease renewal (`renewTime`, read right after the kill; one machine, one clock). The
phases, in order:

- restart: kill -> the new process started (the bench's own bookkeeping);
- boot: -> its first Lease read (`Standby: Lease`: Python start-up, imports);
- lease: -> it holds the Lease (`Leading:`);
- kopf: -> `Herd operator started` (runtime, journal load, kopf start-up);
- recover: -> the first helm rollback/uninstall (the hand-over grace, the first pass);
- redeploy: -> the first helm upgrade after it (the recovery's own helm);
- rollout: -> the last helm upgrade's start (the rest of the DAG);
- settle: -> converged as the bench sees it (the last helm, the bench's 1 s polls).

`excess`: how long after the earliest safe moment (the killed holder's last renewal plus
the Lease duration) the new process took the Lease.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks._faults_bed import charts

from e2e.testbed.controlplane import FAKE_NODES, Cluster
from e2e.testbed.helpers import kubectl
from e2e.testbed.herd_controller import CONTROLLER_NS, Controller

PHASES = ("restart", "boot", "lease", "kopf", "recover", "redeploy", "rollout", "settle")
MARKS = {  # the log line that ends each phase read from the controller's log
    "boot": "Standby: Lease",
    "lease": "Leading: acquired Lease",
    "kopf": "Herd operator started",
}
RECOVERY_VERBS = ("rollback", "uninstall")
GATED = "a"  # the release each trial holds pending


def gated_charts(repo: str, namespace: str, trial: int, timeout: str) -> list[dict[str, Any]]:
    """The diamond of `charts`, its root the gpu-operator stand-in held by trial's gate."""
    found = charts(repo, namespace, f"kill-{trial}", timeout=timeout)
    selector = {f"herd.test/gate-{trial}": "open"} if trial else {}
    found[0] = {
        **found[0],
        "chart": "gpu-operator",
        "version": "23.9.1",
        "values": {"inline": {"nodeSelector": selector}},
    }
    return found


def wait_pending(kubeconfigs: Iterable[Path], namespace: str, timeout: float = 60.0) -> bool:
    """True once the gated release is pending-upgrade on some cluster (False at timeout)."""
    selector = f"owner=helm,name={GATED},status=pending-upgrade"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for kubeconfig in kubeconfigs:
            out = kubectl(
                kubeconfig, "get", "secret", "-n", namespace, "-l", selector, "-o", "name",
                check=False,
            )  # fmt: skip
            if out.strip():
                return True
        time.sleep(0.25)
    return False


def open_gate(clusters: Iterable[Cluster], trial: int) -> None:
    """Label every node so the trial's pods schedule (older gates stay open)."""
    for cluster in clusters:
        for node in FAKE_NODES:
            kubectl(cluster.kubeconfig, "label", "node", node, f"herd.test/gate-{trial}=open")


def last_renewal(controller: Controller, lease: str = "herd-controller") -> float | None:
    """The Lease's renewTime (epoch) as the killed holder left it."""
    out = kubectl(
        controller.kubeconfig, "get", "lease", lease, "-n", CONTROLLER_NS, "-o", "json",
        check=False,
    )  # fmt: skip
    try:
        stamp = json.loads(out)["spec"]["renewTime"]
    except (ValueError, KeyError, TypeError):
        return None
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


@dataclass
class Trial:
    """One kill's moments (epoch seconds); `None` where a moment was not seen."""

    killed: float
    renewed: float | None
    lease: float
    marks: dict[str, float | None] = field(default_factory=dict)

    @property
    def total(self) -> float:
        """Seconds from the kill to converged."""
        return (self.marks.get("settle") or self.killed) - self.killed

    @property
    def excess(self) -> float | None:
        leading = self.marks.get("lease")
        if leading is None or self.renewed is None:
            return None
        return leading - (self.renewed + self.lease)

    def phases(self) -> dict[str, float | None]:
        """Seconds per phase; a phase whose ends were not both seen is None."""
        moments = [self.killed, *(self.marks.get(p) for p in PHASES)]
        found: dict[str, float | None] = {}
        previous: float | None = moments[0]
        for name, moment in zip(PHASES, moments[1:], strict=True):
            found[name] = moment - previous if moment is not None and previous else None
            previous = moment if moment is not None else previous
        return found


def trial(
    controller: Controller, offset: int, killed: float, renewed: float | None, converged: float
) -> Trial:
    """The moments of the trial whose restarted controller logs from `offset` on."""
    text = controller.log_text(offset)
    marks: dict[str, float | None] = {"restart": _started(text)}
    for phase, line in MARKS.items():
        marks[phase] = _logged(text, line)
    calls = [c for c in controller.helm_calls(killed) if c.mutating]
    recovery = next((c.at for c in calls if c.verb in RECOVERY_VERBS), None)
    upgrades = [c.at for c in calls if c.verb == "upgrade" and c.at >= (recovery or 0)]
    marks["recover"] = recovery
    marks["redeploy"] = upgrades[0] if upgrades else None
    marks["rollout"] = upgrades[-1] if upgrades else None
    marks["settle"] = converged
    lease = float(controller.settings["HERD_LEASE_SECONDS"])
    return Trial(killed, renewed, lease, marks)


def summary(trials: list[Trial]) -> list[tuple[str, str]]:
    """Printable figures: each phase's median (min-max), and the Lease's excess wait."""
    rows = []
    for name in PHASES:
        seen = [v for t in trials if (v := t.phases()[name]) is not None]
        rows.append(f"{name} {_spread(seen)}")
    excess = [v for t in trials if (v := t.excess) is not None]
    return [
        ("phases, median (min-max) s", "; ".join(rows)),
        ("Lease taken after the earliest safe moment (renewTime + Lease), s", _spread(excess)),
    ]


def per_trial(trials: list[Trial]) -> str:
    """Each trial's phases on one line, in order."""
    lines = []
    for number, one in enumerate(trials, 1):
        cells = " ".join(f"{v:.1f}" if v is not None else "-" for v in one.phases().values())
        lines.append(f"#{number}: {cells}")
    return f"({' / '.join(PHASES)}) " + "; ".join(lines)


def _spread(values: list[float]) -> str:
    if not values:
        return "n/a"
    return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def _started(text: str) -> float | None:
    for line in text.splitlines():
        if line.startswith("=== start ") and " at " in line:
            try:
                return float(line.rsplit(" at ", 1)[1])
            except ValueError:
                return None
    return None


def _logged(text: str, needle: str) -> float | None:
    """The `[YYYY-mm-dd HH:MM:SS,mmm]` time of the first line holding `needle`."""
    for line in text.splitlines():
        if needle in line and line.startswith("["):
            try:
                stamp = datetime.strptime(line[1:24], "%Y-%m-%d %H:%M:%S,%f")
            except ValueError:
                continue
            return stamp.timestamp()  # local time, as logging wrote it
    return None
