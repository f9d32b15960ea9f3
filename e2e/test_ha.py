"""One active controller: leader election, failover, shards and graceful shutdown, for real.

`herd operator` processes run against the test bed's management cluster, as a pod would
run them (SIGKILL of the process group for a crash, SIGTERM to the process alone for a
pod stop). They use their own controller namespace (the Lease, kubeconfig Secrets) and
watch only their own Stack namespace, so other operator tests are not disturbed. The
tests run in order: leader and standby, failover, shards and handover, SIGTERM mid-helm,
a leader that loses its Lease.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.testbed import helpers
from e2e.testbed.chartrepo import helm_binary, helm_list_all
from e2e.testbed.controlplane import FAKE_NODES
from e2e.testbed.controlplane import Cluster as BedCluster
from e2e.testbed.helpers import kubectl
from e2e.testbed.processes import free_port

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
CONTROLLER_NS = "herd-ha"
STACKS_NS = "ha-stacks"
APPS_NS = "ha-apps"
CLUSTER_ID = "ha-cluster-1"
SHUTDOWN_SECONDS = 60.0
# Shorter than the default (15 s), as the fault benchmarks run it: failover and recovery
# wait for a dead leader's Lease, and their bounds (Lease + ...) scale with it.
LEASE_SECONDS = 10.0
# Failover is timed by these waits: poll the Lease faster than the suite does.
eventually = functools.partial(helpers.eventually, interval=0.25)


def helm(cluster: BedCluster, *args: str) -> Any:
    out = subprocess.run(
        [helm_binary(), "--kubeconfig", str(cluster.kubeconfig), *args, "-o", "json"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return json.loads(out.stdout) if out.returncode == 0 and out.stdout.strip() else None


def releases(cluster: BedCluster) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in helm(cluster, *helm_list_all(), "-n", APPS_NS) or []}


@dataclass
class Controller:
    name: str
    log: Path
    process: subprocess.Popen[bytes]
    health_port: int

    def role(self) -> str:
        """What /healthz (the pod's liveness and readiness probe) answers."""
        url = f"http://127.0.0.1:{self.health_port}/healthz"
        with urllib.request.urlopen(url, timeout=5) as response:
            assert response.status == 200
            role: str = json.loads(response.read())["role"]
            return role

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def crash(self) -> None:
        """What a node failure or OOM kill does: the process and its helm children die."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def terminate(self) -> None:
        """What the kubelet does on pod stop: SIGTERM to the main process only."""
        os.kill(self.process.pid, signal.SIGTERM)

    def identity_part(self) -> str:
        return f"_{self.process.pid}_"


@dataclass
class Bed:
    management: BedCluster
    target: BedCluster
    workdir: Path
    repo: str
    controllers: list[Controller] = field(default_factory=list)

    def start(self, name: str, shard: str = "") -> Controller:
        log = self.workdir / f"{name}.log"
        health_port = free_port()
        env = {
            **os.environ,
            "KUBECONFIG": str(self.management.kubeconfig),
            "HERD_NAMESPACE": CONTROLLER_NS,
            "HERD_RANCHER_NAMESPACES": "",
            "HERD_SHARD": shard,
            "HERD_WORKDIR": str(self.workdir / name / "work"),
            "HERD_RESYNC_SECONDS": "600",
            "HERD_RETRY_SECONDS": "3",
            "HERD_FLEET_SECONDS": "2",
            "HERD_SHUTDOWN_SECONDS": str(SHUTDOWN_SECONDS),
            "HERD_LEASE_SECONDS": str(LEASE_SECONDS),
            "HERD_METRICS_PORT": str(free_port()),
            "HERD_HEALTH_PORT": str(health_port),
        }
        with log.open("w") as out:
            process = subprocess.Popen(
                [str(VENV_BIN / "herd"), "operator", "--namespace", STACKS_NS],
                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        controller = Controller(name, log, process, health_port)
        self.controllers.append(controller)
        return controller

    def holder(self, shard: str = "") -> str:
        lease = "herd-controller" + (f"-{shard}" if shard else "")
        path = f"/apis/coordination.k8s.io/v1/namespaces/{CONTROLLER_NS}/leases/{lease}"
        found = helpers.api_get(self.management, path, check=False) or {}
        return str(found.get("spec", {}).get("holderIdentity") or "")

    def apply(self, body: dict[str, Any]) -> None:
        kubectl(self.management.kubeconfig, "apply", "-f", "-", stdin=yaml.safe_dump(body))

    def stack(self, name: str) -> dict[str, Any]:
        return helpers.get_stack(self.management, STACKS_NS, name, check=False)

    def settled(self, name: str, phase: str = "Deployed", timeout: float = 180.0) -> Any:
        def probe() -> dict[str, Any] | None:
            stack = self.stack(name)
            status = stack.get("status") or {}
            generation = stack.get("metadata", {}).get("generation")
            ok = status.get("phase") == phase and status.get("observedGeneration") == generation
            return status if ok else None

        return eventually(f"Stack {name} {phase}", probe, timeout)


def stack(name: str, charts: list[dict[str, Any]], shard: str = "") -> dict[str, Any]:
    labels = {"herd.suse.com/shard": shard} if shard else {}
    return {
        "apiVersion": "herd.suse.com/v1",
        "kind": "Stack",
        "metadata": {"name": name, "namespace": STACKS_NS, "labels": labels},
        "spec": {
            "env": "test",
            "targets": {"selector": {"matchLabels": {"ha": "yes"}}},
            "charts": charts,
        },
    }


def app(repo: str, name: str, message: str = "v1", **extra: Any) -> dict[str, Any]:
    return {
        "name": name, "chart": "app", "repo": repo, "version": "0.1.0",
        "namespace": APPS_NS, "wait": True, "timeout": "2m",
        "values": {"inline": {"message": message}}, **extra,
    }  # fmt: skip


@pytest.fixture(scope="module")
def bed(
    management: BedCluster,
    downstream: list[BedCluster],
    chart_repo_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Bed]:
    config = management.kubeconfig
    kubectl(config, "apply", "-f", str(ROOT / "crds"))
    for namespace in (CONTROLLER_NS, STACKS_NS):
        kubectl(config, "create", "namespace", namespace, check=False)
    # A Lease left by a SIGKILLed controller of another module on this bed (test_recovery
    # shares the namespace) would make the first controller wait out a whole Lease.
    forget_leases(config)
    target = downstream[0]
    secret = f"{CLUSTER_ID}-kubeconfig"
    kubectl(config, "delete", "secret", secret, "-n", CONTROLLER_NS, check=False)
    kubectl(config, "create", "secret", "generic", secret, "-n", CONTROLLER_NS,
            f"--from-file=kubeconfig={target.kubeconfig}")  # fmt: skip
    kubectl(config, "label", "secret", secret, "-n", CONTROLLER_NS,
            "herd.suse.com/cluster=true", "ha=yes")  # fmt: skip
    kubectl(config, "annotate", "secret", secret, "-n", CONTROLLER_NS,
            f"herd.suse.com/cluster-id={CLUSTER_ID}")  # fmt: skip
    # The Stacks live outside the controller's namespace: a ClusterGrant lets them reach the
    # test's cluster and namespace.
    grant = {
        "apiVersion": "herd.suse.com/v1",
        "kind": "ClusterGrant",
        "metadata": {"name": STACKS_NS},
        "spec": {
            "namespaces": [STACKS_NS],
            "clusters": {"clusterIds": [CLUSTER_ID]},
            "targetNamespaces": [APPS_NS],
        },
    }
    kubectl(config, "apply", "-f", "-", stdin=yaml.safe_dump(grant))
    result = Bed(management, target, tmp_path_factory.mktemp("ha"), chart_repo_url)
    try:
        yield result
    finally:
        kubectl(config, "delete", "clustergrant", STACKS_NS, check=False)
        for controller in result.controllers:
            if controller.process.poll() is None:
                controller.crash()
        forget_leases(config)
        kubectl(target.kubeconfig, "label", "node", FAKE_NODES[0], "herd.test/gate-",
                check=False)  # fmt: skip


def forget_leases(config: Path) -> None:
    """No controller of the bed runs: drop the Leases they held (a crash leaves them)."""
    kubectl(config, "delete", "leases", "--all", "-n", CONTROLLER_NS, check=False)


def started(controller: Controller, what: str, timeout: float = 60.0) -> None:
    try:
        eventually(f"{controller.name}: {what}", lambda: what in controller.text(), timeout)
    except AssertionError as error:
        raise AssertionError(f"{error}\n{controller.text()[-3000:]}") from None


def helm_operations(text: str, *names: str) -> list[str]:
    """The controller's log lines of helm changes to these releases (one per operation)."""
    return [
        line for line in text.splitlines()
        if any(f"(release {APPS_NS}/{name})" in line for name in names)
        and any(verb in line for verb in ("Installed chart", "Upgraded chart", "Uninstalled"))
    ]  # fmt: skip


def test_one_controller_leads_the_other_stands_by_and_helm_runs_once(bed: Bed) -> None:
    a = bed.start("a")
    eventually("a to lead", lambda: a.identity_part() in bed.holder(), 60)
    started(a, "Herd operator started")
    b = bed.start("b")
    started(b, "Standby: Lease herd-ha/herd-controller is held by")
    bed.apply(stack("ha-one", [app(bed.repo, "db"), app(bed.repo, "api", dependsOn=["db"])]))
    bed.settled("ha-one")
    for edit in ("v2", "v3", "v4"):
        body = stack("ha-one", [app(bed.repo, "db"), app(bed.repo, "api", edit, dependsOn=["db"])])
        bed.apply(body)
        bed.settled("ha-one")
    # Every edit is one helm operation on one release: no duplicate, nothing failed.
    history = helm(bed.target, "history", "api", "-n", APPS_NS)
    assert [h["revision"] for h in history] == [1, 2, 3, 4], history
    assert {h["status"] for h in history} == {"superseded", "deployed"}, history
    assert [h["revision"] for h in helm(bed.target, "history", "db", "-n", APPS_NS)] == [1]
    assert len(helm_operations(a.text(), "db", "api")) == 5, a.text()[-3000:]
    assert helm_operations(b.text(), "db", "api") == []
    assert "Herd operator started" not in b.text()
    assert b.process.poll() is None
    assert (a.role(), b.role()) == ("leader", "standby")  # both alive for the kubelet
    assert a.identity_part() in bed.holder()


def test_the_standby_takes_over_when_the_leader_is_killed(bed: Bed) -> None:
    a, b = bed.controllers
    before = bed.stack("ha-one")["metadata"]["generation"]
    a.crash()
    killed = time.monotonic()
    # An edit while nobody leads: the new leader's first pass must pick it up.
    bed.apply(stack("ha-one", [app(bed.repo, "db"), app(bed.repo, "api", "v5", dependsOn=["db"])]))
    eventually("b to lead", lambda: b.identity_part() in bed.holder(), 60)
    acquired = time.monotonic() - killed

    def first_status_write() -> bool:
        status = bed.stack("ha-one").get("status") or {}
        return bool(status.get("observedGeneration", 0) > before)

    eventually("b's first status write", first_status_write, 60)
    written = time.monotonic() - killed
    status = bed.settled("ha-one")
    print(
        f"\nFAILOVER (lease {LEASE_SECONDS:.0f}s): standby acquired the Lease "
        f"{acquired:.1f}s after SIGKILL of the leader, first status write after {written:.1f}s"
    )
    # At most a Lease duration plus a retry period (2 s), with slack for a loaded machine.
    assert acquired < LEASE_SECONDS + 2 + 5, acquired
    assert status["deploymentCounts"] == {"Deployed": 2}
    assert len(helm_operations(b.text(), "db", "api")) == 1  # the v5 upgrade, once
    assert [h["revision"] for h in helm(bed.target, "history", "api", "-n", APPS_NS)][-1] == 5


def test_a_sharded_stack_is_handled_only_by_its_shard(bed: Bed) -> None:
    b = bed.controllers[1]
    blue = bed.start("blue", shard="blue")
    eventually("blue to lead its shard", lambda: blue.identity_part() in bed.holder("blue"), 60)
    assert b.identity_part() in bed.holder(), "the shards share one Lease"
    bed.apply(stack("ha-blue", [app(bed.repo, "blue-web")], shard="blue"))
    bed.settled("ha-blue")
    assert len(helm_operations(blue.text(), "blue-web")) == 1
    assert helm_operations(b.text(), "blue-web") == []
    assert "ha-blue" not in b.text()
    # ... and the unlabelled Stack stays with the controller without a shard.
    assert helm_operations(blue.text(), "db", "api") == []
    assert "ha-one" not in blue.text()
    assert "blue-web" in releases(bed.target)
    kubectl(bed.management.kubeconfig, "delete", "stack", "ha-blue", "-n", STACKS_NS,
            "--timeout=120s")  # fmt: skip
    assert "blue-web" not in releases(bed.target)
    assert len(helm_operations(blue.text(), "blue-web")) == 2  # install, uninstall
    # A clean stop hands the Lease over: the shard's standby leads at its next try.
    spare = bed.start("blue-spare", shard="blue")
    started(spare, "Standby: Lease herd-ha/herd-controller-blue is held by")
    blue.terminate()
    stopped = time.monotonic()
    assert blue.process.wait(30) == 0
    eventually("the handover", lambda: spare.identity_part() in bed.holder("blue"), 30)
    print(f"\nHANDOVER on SIGTERM: standby leads {time.monotonic() - stopped:.1f}s after it")
    spare.terminate()
    assert spare.process.wait(30) == 0


def test_sigterm_lets_running_helm_finish_and_starts_no_more(bed: Bed) -> None:
    b = bed.controllers[1]
    gate = f"open-{os.getpid()}"
    slow = {
        "name": "slow", "chart": "qdrant", "repo": bed.repo, "version": "0.7.4",
        "namespace": APPS_NS, "wait": True, "timeout": "3m",
        # Schedulable only once the test labels a node: helm --wait runs until then.
        "values": {"inline": {"nodeSelector": {"herd.test/gate": gate}}},
    }  # fmt: skip
    bed.apply(stack("ha-slow", [slow, app(bed.repo, "after-slow", dependsOn=["slow"])]))
    eventually(
        "helm installing slow",
        lambda: releases(bed.target).get("slow", {}).get("status") == "pending-install",
        180,
    )
    b.terminate()
    signalled = time.monotonic()
    time.sleep(3)
    assert b.process.poll() is None, "exited without waiting for helm"
    assert releases(bed.target)["slow"]["status"] == "pending-install"
    kubectl(bed.target.kubeconfig, "label", "node", FAKE_NODES[0], f"herd.test/gate={gate}",
            "--overwrite")  # fmt: skip
    code = b.process.wait(SHUTDOWN_SECONDS + 30)
    took = time.monotonic() - signalled
    print(f"\nSIGTERM mid-helm: exited {code} after {took:.1f}s (budget {SHUTDOWN_SECONDS:.0f}s)")
    text = b.text()
    assert code == 0, text[-3000:]
    assert took < SHUTDOWN_SECONDS + 10
    found = releases(bed.target)
    assert found["slow"]["status"] == "deployed", found
    assert "after-slow" not in found, "a helm operation started after SIGTERM"
    assert "Stopping: no new helm work" in text and "Helm is idle" in text
    assert bed.holder() == "", "the Lease was not handed over"


def test_a_leader_that_loses_its_lease_stops_and_exits_1(bed: Bed) -> None:
    c = bed.start("c")
    eventually("c to lead", lambda: c.identity_part() in bed.holder(), 60)
    started(c, "Herd operator started")
    # Another actor takes the Lease (as after a partition): c must notice at its next
    # renewal and stop, so that two controllers never act at once.
    kubectl(bed.management.kubeconfig, "patch", "lease", "herd-controller", "-n", CONTROLLER_NS,
            "--type=merge", "-p", '{"spec": {"holderIdentity": "intruder"}}')  # fmt: skip
    assert c.process.wait(30) == 1, c.text()[-3000:]
    assert "Lost Lease herd-ha/herd-controller to intruder" in c.text()
    assert bed.holder() == "intruder", "a controller that lost the Lease released it"
