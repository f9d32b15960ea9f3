"""Crash recovery bounded by the Lease, for real: the operation journal (`herd.kube.journal`).

`herd operator` processes as in `e2e/test_ha.py` (its bed: own controller namespace and
Lease, one downstream cluster). A controller SIGKILLed with its helm children while
`helm upgrade --wait` runs on a chart with `timeout: 15m` leaves the release
`pending-upgrade`; the standby, now leader, recovers it as soon as it holds the Lease and the
hand-over grace has passed, not after the chart's timeout. A release another live actor
is upgrading (a plain `helm upgrade` carrying Herd's own labels, as a tenant could forge
them) is never touched. A controller restarted on its own work directory (a container
restarted in its pod) takes the Lease its dead predecessor held at once, without waiting a
Lease duration, but not while a helm of that predecessor still runs. The tests run in
order (the second uses the first's Stack).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from datetime import datetime

from e2e.test_ha import (
    APPS_NS,
    LEASE_SECONDS,
    STACKS_NS,
    Bed,
    eventually,
    forget_leases,
    releases,
    stack,
    started,
)
from e2e.test_ha import bed as ha_bed  # noqa: F401 (the module-scoped fixture, reused)
from e2e.testbed.chartrepo import helm_binary
from e2e.testbed.controlplane import FAKE_NODES
from e2e.testbed.helpers import kubectl

RELEASE = "recover"
TARGET_SECONDS = LEASE_SECONDS + 20  # issue 26: kill -> converged


def _stack(repo: str, gate: str | None) -> dict[str, object]:
    values = {"nodeSelector": {"herd.test/gate": gate}} if gate else {}
    chart = {
        "name": RELEASE, "chart": "qdrant", "repo": repo, "version": "0.7.4",
        "namespace": APPS_NS, "wait": True, "timeout": "15m",
        "values": {"inline": values},
    }  # fmt: skip
    return stack("recovery", [chart])


def _open_gate(bed: Bed, gate: str) -> None:
    kubectl(bed.target.kubeconfig, "label", "node", FAKE_NODES[0], f"herd.test/gate={gate}",
            "--overwrite")  # fmt: skip


def _leads(bed: Bed, controller: object) -> None:
    part = controller.identity_part()  # type: ignore[attr-defined]
    eventually("the new controller to lead", lambda: part in bed.holder(), LEASE_SECONDS + 60)


def test_a_killed_controllers_pending_upgrade_is_recovered_within_the_lease(ha_bed: Bed) -> None:  # noqa: F811
    bed = ha_bed
    a = bed.start("recovery-a")
    _leads(bed, a)
    bed.apply(_stack(bed.repo, None))
    bed.settled("recovery")
    gate = f"recover-{os.getpid()}"
    bed.apply(_stack(bed.repo, gate))  # unschedulable until the gate opens: helm waits
    eventually(
        "helm upgrading",
        lambda: releases(bed.target).get(RELEASE, {}).get("status") == "pending-upgrade",
        120,
    )
    b = bed.start("recovery-b")  # the standby replica
    started(b, "Standby: Lease")
    a.crash()  # the controller and its helm children, as a node failure does
    killed = time.monotonic()
    _open_gate(bed, gate)  # the desired config can now become ready
    bed.settled("recovery", timeout=TARGET_SECONDS + 120)
    took = time.monotonic() - killed
    print(f"\nKILL mid-upgrade (timeout 15m): converged {took:.1f}s after the kill")
    assert releases(bed.target)[RELEASE]["status"] == "deployed"
    assert "helm operation(s) of earlier holders to check" in b.text()
    assert _helm_verbs(b.text()).count("rollback") == 1, "not recovered by one rollback"
    assert took <= TARGET_SECONDS, f"{took:.1f}s > Lease + 20 s\n{b.text()[-3000:]}"


def test_a_release_a_live_actor_is_upgrading_is_never_touched(ha_bed: Bed) -> None:  # noqa: F811
    bed = ha_bed
    b = bed.controllers[-1]
    b.crash()  # idle: its journal holds nothing pending
    labels = _herd_labels(bed)
    gate = f"closed-{os.getpid()}"
    live = subprocess.Popen(
        [
            helm_binary(), "--kubeconfig", str(bed.target.kubeconfig), "upgrade", RELEASE,
            "qdrant", "--repo", bed.repo, "--version", "0.7.4", "-n", APPS_NS,
            "--wait", "--timeout", "15m", "--labels", labels,
            "--set", f"nodeSelector.herd\\.test/gate={gate}",
        ],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        eventually(
            "the live helm upgrading",
            lambda: releases(bed.target).get(RELEASE, {}).get("status") == "pending-upgrade",
            60,
        )
        revision = releases(bed.target)[RELEASE]["revision"]
        c = bed.start("recovery-c")
        _leads(bed, c)
        started(c, "Herd operator started")
        eventually(
            "the controller to see the live operation",
            lambda: "operation in progress elsewhere" in json.dumps(bed.stack("recovery")),
            90,
        )
        time.sleep(10)
        found = releases(bed.target)[RELEASE]
        assert (found["status"], found["revision"]) == ("pending-upgrade", revision)
        assert live.poll() is None, "the live helm ended"
        assert not {"rollback", "uninstall", "upgrade"} & set(_helm_verbs(c.text()))
    finally:
        live.terminate()
        live.wait(30)
        _leave_nothing(bed)


TAKEN_AT_ONCE = "which ended with every helm it started: taking it at once"
WAITED = "waiting for it to be released or expire"


def _pending(bed: Bed, gate: str) -> None:
    bed.apply(_stack(bed.repo, gate))  # unschedulable until the gate opens: helm waits
    eventually(
        "helm upgrading",
        lambda: releases(bed.target).get(RELEASE, {}).get("status") == "pending-upgrade",
        120,
    )


def test_a_restarted_controller_takes_over_from_its_dead_self_at_once(ha_bed: Bed) -> None:  # noqa: F811
    bed = ha_bed
    forget_leases(bed.management.kubeconfig)  # the earlier tests' dead holders
    d = bed.start("recovery-d")
    _leads(bed, d)
    bed.apply(_stack(bed.repo, None))
    bed.settled("recovery")
    gate = f"restart-{os.getpid()}"
    _pending(bed, gate)
    d.crash()  # the container dies with its helm children; the pod and its emptyDir stay
    killed = time.monotonic()
    again = bed.start("recovery-d")  # the same work directory
    _open_gate(bed, gate)
    started(again, "Leading: acquired Lease")
    bed.settled("recovery", timeout=TARGET_SECONDS + 120)
    took = time.monotonic() - killed
    print(f"\nRESTART mid-upgrade (timeout 15m): converged {took:.1f}s after the kill")
    text = again.text()
    assert TAKEN_AT_ONCE in text and WAITED not in text
    # The mechanism, not the machine's load (the wall time includes Python's start and
    # helm's work; faults.py kill measures it): the Lease is taken right after its first read.
    waited = _logged_at(text, "Leading: acquired Lease") - _logged_at(text, TAKEN_AT_ONCE)
    assert waited < LEASE_SECONDS / 2, f"{waited:.1f}s from the first Lease read to leading"
    assert releases(bed.target)[RELEASE]["status"] == "deployed"
    assert _helm_verbs(text).count("rollback") == 1, "not recovered by one rollback"


def _logged_at(text: str, what: str) -> float:
    """The epoch seconds of the first log line holding `what` (kopf's `[asctime]`)."""
    line = next(line for line in text.splitlines() if what in line)
    stamp = line[1 : line.index("]")]
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def test_a_restart_beside_a_live_helm_of_its_predecessor_waits_the_lease(ha_bed: Bed) -> None:  # noqa: F811
    bed = ha_bed
    d = bed.controllers[-1]  # the restarted controller of the test above, leading
    _pending(bed, f"orphan-{os.getpid()}")
    os.kill(d.process.pid, signal.SIGKILL)  # the controller alone: its helm runs on
    d.process.wait()
    os.killpg(d.process.pid, 0)  # its group lives on: the helm (ProcessLookupError if not)
    try:
        again = bed.start("recovery-d")
        started(again, WAITED)
        time.sleep(LEASE_SECONDS / 2)
        assert "Leading: acquired Lease" not in again.text()
        assert TAKEN_AT_ONCE not in again.text()
    finally:
        with contextlib.suppress(ProcessLookupError):  # the orphaned helm, in the old group
            os.killpg(d.process.pid, signal.SIGKILL)
    # It leads once the Lease has expired in its eyes (recovery then goes as for a standby:
    # test 1); the bed is left clean for test_ha.
    started(again, "Leading: acquired Lease", LEASE_SECONDS + 30)
    _leave_nothing(bed)


def _leave_nothing(bed: Bed) -> None:
    """No Stack or release of this module stays on the bed, where the next module's
    controllers (test_ha's) would take them over: the controller stops, the Stack goes
    without it (its finalizer dropped) and the release through helm."""
    for controller in bed.controllers:
        if controller.process.poll() is None:
            controller.crash()
    where = ("recovery", "-n", STACKS_NS)
    kubectl(bed.management.kubeconfig, "delete", "stack", *where, "--wait=false", check=False)
    kubectl(bed.management.kubeconfig, "patch", "stack", *where, "--type=merge", "-p",
            '{"metadata": {"finalizers": null}}', check=False)  # fmt: skip
    subprocess.run(
        [helm_binary(), "--kubeconfig", str(bed.target.kubeconfig), "uninstall", RELEASE,
         "-n", APPS_NS, "--no-hooks"],
        capture_output=True, check=False, timeout=120,
    )  # fmt: skip


def _helm_verbs(log: str) -> list[str]:
    """The helm commands a controller ran, in order (its "running command:" lines)."""
    verbs = []
    for line in log.splitlines():
        if "running command: " in line:
            words = line.split("running command: ", 1)[1].split()
            verbs.append(words[1] if len(words) > 1 else "")
    return verbs


def _herd_labels(bed: Bed) -> str:
    """The Herd labels of the release's latest revision (what a forger would copy)."""
    out = kubectl(
        bed.target.kubeconfig, "get", "secret", "-n", APPS_NS, "-l",
        f"owner=helm,name={RELEASE}", "-o", "json",
    )  # fmt: skip
    items = sorted(json.loads(out)["items"], key=lambda s: int(s["metadata"]["labels"]["version"]))
    labels = items[-1]["metadata"]["labels"]
    return ",".join(f"{k}={v}" for k, v in labels.items() if k.startswith("herd.suse.com/"))
