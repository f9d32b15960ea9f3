"""The Herd controller as a real process on the test bed, for fault tests.

Role: prepare a Rancher-shaped management cluster the way `install/` does (CRD, RBAC,
the controller's ServiceAccount token as its identity) and run `python -m herd
operator` against it in its own process group, so a test can SIGKILL it together with
its helm children (as a pod kill does), restart it with the same HERD_WORKDIR, or run
two at once. Every helm call goes through a logging wrapper (HERD_HELM), so a test
counts helm invocations without reading Herd's code.

Callers: `benchmarks/faults.py` and its `_faults_*` helpers, `e2e/test_fuzz_operator.py`;
`tenant_controller` (a Rancher namespace, tenant namespaces and their grants, one controller
watching them) for `e2e/test_tenancy.py` and `e2e/test_security_ownership.py`.
Settings are environment variables of issue 11 (C5/C6): a controller that does not know
one ignores it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from e2e.testbed import faults, rancher
from e2e.testbed.chartrepo import helm_binary
from e2e.testbed.helpers import (
    Target,
    api_get,
    eventually,
    get_stack,
    kubectl,
    wait_established,
)
from e2e.testbed.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
CONTROLLER_NS = "herd-system"
# What a started controller logs: as the leader, or as a standby behind another one.
STARTED = ("Herd operator started", "Standby: Lease")
# The test bed's chart repositories and registry are on loopback, which the egress deny
# list refuses to tenant Stacks: controllers on the bed allow it (`HERD_EGRESS_ALLOW_CIDRS`).
LOOPBACK_EGRESS = "127.0.0.0/8,::1/128"
SEPARATOR = "\x1f"  # between the arguments of one logged helm call
STACKS = "/apis/herd.suse.com/v1/namespaces"


def settled_stack(target: Target, namespace: str, name: str, timeout: float) -> dict[str, Any]:
    """A Stack's status once the pass of its current generation has ended."""

    def probe() -> dict[str, Any] | None:
        found = get_stack(target, namespace, name, check=False)
        current: dict[str, Any] = found.get("status") or {}
        done = current.get("phase") not in (None, "Pending", "Deploying")
        fresh = current.get("observedGeneration") == found.get("metadata", {}).get("generation")
        return current if done and fresh else None

    return eventually(f"Stack {namespace}/{name} to settle", probe, timeout)


def delete_stacks(management: Path, namespaces: Sequence[str], timeout: float = 120.0) -> None:
    """Delete every Stack of `namespaces` at once, and return once they are gone (their
    releases uninstalled by the controller, all namespaces' together) or after `timeout`:
    a teardown, it does not fail."""

    def gone() -> bool:
        found = [api_get(management, f"{STACKS}/{ns}/stacks", check=False) for ns in namespaces]
        return all(f is not None and not f.get("items") for f in found)

    for namespace in namespaces:
        kubectl(management, "delete", "stacks", "--all", "-n", namespace, "--wait=false",
                check=False)  # fmt: skip
    with contextlib.suppress(AssertionError):
        eventually("the Stacks gone", gone, timeout)


def prepare_management(management: Path, rancher_namespaces: list[str]) -> None:
    """CRD, `install/` (namespace, RBAC), and install/'s fleet-default Role per namespace:
    after the CRD, one kubectl apply (the namespaces first), not a process per object."""
    kubectl(management, "apply", "-f", str(ROOT / "crds"))
    wait_established(management, "stacks.herd.suse.com")
    installed = [
        doc
        for path in sorted((ROOT / "install").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]
    roles = [
        d
        for d in installed
        if d["kind"] in ("Role", "RoleBinding") and d["metadata"]["namespace"] == "fleet-default"
    ]
    # install/ has Roles in both fleet namespaces.
    namespaces = dict.fromkeys(["fleet-default", "fleet-local", *rancher_namespaces])
    docs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}} for n in namespaces]
    docs += installed
    docs += [
        {**d, "metadata": {**d["metadata"], "namespace": namespace}}
        for namespace in rancher_namespaces
        for d in roles
    ]
    kubectl(management, "apply", "-f", "-", stdin=yaml.safe_dump_all(docs))


def service_account_kubeconfig(management: Path, path: Path) -> Path:
    """The management kubeconfig with the install/ ServiceAccount's token as its user."""
    token = kubectl(
        management, "create", "token", "herd-controller", "-n", CONTROLLER_NS, "--duration", "4h"
    ).strip()
    config = yaml.safe_load(management.read_text())
    for user in config["users"]:
        user["user"] = {"token": token}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def write_helm_wrapper(path: Path, log: Path) -> Path:
    """A `helm` that appends `<epoch> <pid>␟arg␟arg...` to `log`, then execs the real one.

    exec keeps helm's pid and process group, so signals reach helm exactly as before.
    """
    script = f"""#!/bin/sh
US=$(printf '\\037')
line="$(date +%s.%N) $$"
for a in "$@"; do line="$line$US$a"; done
printf '%s\\n' "$line" >> '{log}'
exec '{helm_binary()}' "$@"
"""
    path.write_text(script)
    path.chmod(0o700)
    log.touch(mode=0o600)
    return path


@dataclass(frozen=True)
class HelmCall:
    at: float
    pid: int
    args: tuple[str, ...]

    @property
    def verb(self) -> str:
        """The helm subcommand (`upgrade`, `pull`, `uninstall`, `rollback`, ...)."""
        words = [a for a in self.args if not a.startswith("-")]
        return words[0] if words else ""

    @property
    def mutating(self) -> bool:
        return self.verb in ("upgrade", "install", "uninstall", "rollback")


@dataclass
class Controller:
    """One `herd operator` process: its directory holds log, TMPDIR, HERD_WORKDIR, helm log."""

    name: str
    directory: Path
    kubeconfig: Path
    watch_namespace: str
    settings: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    also_watch: tuple[str, ...] = ()  # more namespaces to watch (tenants beside the admin's)

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.tmpdir.mkdir(exist_ok=True, mode=0o700)
        self.wrapper = write_helm_wrapper(self.directory / "helm", self.helm_log)

    @property
    def log(self) -> Path:
        return self.directory / "operator.log"

    @property
    def tmpdir(self) -> Path:
        return self.directory / "tmp"

    @property
    def workdir(self) -> Path:
        return self.directory / "work"

    @property
    def helm_log(self) -> Path:
        return self.directory / "helm-calls.log"

    def environment(self) -> dict[str, str]:
        return {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "TMPDIR": str(self.tmpdir),
            "HERD_HELM": str(self.wrapper),
            "HERD_NAMESPACE": CONTROLLER_NS,
            "HERD_WORKDIR": str(self.workdir),
            "HERD_METRICS_PORT": str(free_port()),
            "HERD_HEALTH_PORT": str(free_port()),
            "PYTHONUNBUFFERED": "1",
            **self.settings,
        }

    def start(self, wait: float = 90.0) -> None:
        """Start (or restart) the process; return once it leads or stands by."""
        offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            out.write(f"\n=== start {self.starts + 1} at {time.time():.3f}\n".encode())
            out.flush()
            self.process = subprocess.Popen(
                [
                    *(sys.executable, "-m", "herd", "operator"),
                    *(
                        a
                        for ns in (self.watch_namespace, *self.also_watch)
                        for a in ("--namespace", ns)
                    ),
                ],
                env=self.environment(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self.directory,
            )
        self.starts += 1
        eventually(
            f"controller {self.name} to start",
            lambda: any(line in self.log_text(offset) for line in STARTED) or not self.alive(),
            wait,
        )
        if not self.alive():
            raise RuntimeError(f"controller {self.name} exited:\n{self.log_text(offset)[-2000:]}")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> list[str]:
        """SIGKILL the process group (controller and helm children); names of its children."""
        if self.process is None:
            return []
        children = faults.kill_group(self.process.pid)
        self.process.wait(timeout=30)
        self.process = None
        return children

    def stop(self, grace: float = 40.0) -> None:
        """SIGTERM the group, SIGKILL what is left after `grace` seconds."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        except ProcessLookupError:
            pass
        faults.kill_group(self.process.pid)
        self.process.wait(timeout=30)
        self.process = None

    def log_text(self, offset: int = 0) -> str:
        try:
            with self.log.open("rb") as handle:
                handle.seek(offset)
                return handle.read().decode(errors="replace")
        except OSError:
            return ""

    def helm_calls(self, since: float = 0.0) -> list[HelmCall]:
        calls = []
        try:
            lines = self.helm_log.read_text(errors="replace").splitlines()
        except OSError:
            return []
        for line in lines:
            head, _, rest = line.partition(SEPARATOR)
            parts = head.split()
            if len(parts) != 2:
                continue  # an argument held a newline: the tail of the previous call
            try:
                at, pid = float(parts[0]), int(parts[1])
            except ValueError:
                continue
            if at >= since:
                calls.append(HelmCall(at, pid, tuple(rest.split(SEPARATOR)) if rest else ()))
        return calls


@contextmanager
def tenant_controller(
    management: Path,
    directory: Path,
    *,
    rancher_ns: str,
    clusters: Sequence[rancher.RancherCluster],
    grants: Sequence[dict[str, Any]],
    settings: dict[str, str],
) -> Iterator[Controller]:
    """A controller watching its own namespace and each grant's tenant namespace (created),
    with `clusters` registered in `rancher_ns`. At the end the Stacks go first (the
    controller uninstalls their releases), then the controller and the grants."""
    prepare_management(management, [rancher_ns])
    rancher.register_clusters(management, list(clusters), namespace=rancher_ns)
    tenants = tuple(dict.fromkeys(ns for g in grants for ns in g["spec"]["namespaces"]))
    for namespace in tenants:
        kubectl(management, "create", "namespace", namespace, check=False)
    kubectl(management, "apply", "-f", "-", stdin=yaml.safe_dump_all(list(grants)))
    running = Controller(
        directory.name,
        directory,
        service_account_kubeconfig(management, directory / "sa.yaml"),
        CONTROLLER_NS,
        settings={
            "HERD_RANCHER_NAMESPACES": rancher_ns,
            "HERD_RETRY_SECONDS": "3",
            "HERD_FLEET_SECONDS": "1",
            **settings,
        },
        also_watch=tenants,
    )
    running.start()
    try:
        yield running
    finally:
        delete_stacks(management, (*tenants, CONTROLLER_NS))
        running.stop()
        names = [g["metadata"]["name"] for g in grants]
        kubectl(management, "delete", "clustergrants", *names, check=False)
