"""Real Kubernetes control planes on 127.0.0.1: the heart of the local test bed.

Callers: `e2e/conftest.py` (session fixtures), `e2e.testbed.__main__` (`up`/`down`)
and `benchmarks/testbed_bench.py`.

One TestBed = one shared etcd (each cluster under its own `--etcd-prefix`) plus, per
cluster, kube-apiserver, kube-controller-manager, kube-scheduler and kwok. kwok plays
the kubelet for a few fake Nodes, so Deployments, Jobs and `helm --wait` go through
the real controllers and only the containers are imaginary. Nothing listens on
anything but loopback, and every process is recorded in `<workdir>/pids`.

A cluster's `components.Shape` (default: all of the above) can make it light (tuned
apiserver, trimmed controller manager, no scheduler or kwok where no pod must bind) or
give its apiserver an audit log: the scale benchmark runs 20 such clusters at once.
"""

from __future__ import annotations

import atexit
import os
import shutil
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from e2e.testbed import binaries as binaries_module
from e2e.testbed import components
from e2e.testbed.binaries import Binaries
from e2e.testbed.certs import ADMIN_USER, CONTROLLER_MANAGER_USER, SCHEDULER_USER, Pki, write_pki
from e2e.testbed.kube import ApiClient, write_kubeconfig
from e2e.testbed.processes import (
    ManagedProcess,
    TestBedError,
    free_port,
    kill_recorded,
    port_clash,
    port_open,
    wait_for,
)

FAKE_NODES = ("kwok-node-1", "kwok-node-2")
DEFAULT_TIMEOUT = 120.0
KUBECONFIG_DIR = "kubeconfigs"
_GRACEFUL_STOP_SECONDS = 15.0
# free_port() can lose a race for its port; a clean retry is cheaper than a flaky test.
_START_ATTEMPTS = 3


class Etcd:
    """The one etcd every cluster of a TestBed stores its objects in."""

    def __init__(self, binary: Path, workdir: Path) -> None:
        self.client_port = free_port()
        argv = components.etcd_args(binary, workdir / "etcd", self.client_port, free_port())
        self.process = ManagedProcess(
            "etcd", argv, workdir / "logs" / "etcd.log", workdir / "pids", tier=2
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    def start(self, timeout: float) -> None:
        self.process.start()
        wait_for("etcd to accept clients", self._serving, timeout, [self.process])

    def _serving(self) -> bool:
        return port_open(self.client_port)

    def stop(self) -> None:
        self.process.stop()


@dataclass
class Cluster:
    """One control plane. `kubeconfig` is an admin (system:masters) kubeconfig file."""

    name: str
    workdir: Path
    kubeconfig: Path
    ports: components.Ports
    pki: Pki
    apiserver: ManagedProcess
    controller_manager: ManagedProcess
    scheduler: ManagedProcess
    kwok: ManagedProcess
    api: ApiClient = field(repr=False)
    shape: components.Shape = components.DEFAULT_SHAPE

    @property
    def audit_log(self) -> Path:
        """The apiserver's audit log (written only when `shape.audit`)."""
        return self.workdir / "audit" / "audit.log"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports.apiserver}"

    @property
    def processes(self) -> list[ManagedProcess]:
        if not self.shape.pods:
            return [self.apiserver, self.controller_manager]
        return [self.apiserver, self.controller_manager, self.scheduler, self.kwok]

    def stop_apiserver(self, graceful: bool = False) -> None:
        """Simulate an outage: the apiserver goes away, its port refuses connections.

        A crash (SIGKILL) by default: a graceful stop waits for the controllers' and
        kwok's open watches to drain, ~10s that an outage test has no use for. kwok stops
        first, cleanly, while the apiserver still answers (see `start_apiserver`).
        """
        if self.shape.pods:
            self.kwok.stop()
        self.apiserver.stop(grace=_GRACEFUL_STOP_SECONDS if graceful else 0.0)
        wait_for(f"{self.name} apiserver port to close", self._port_closed, 30.0)

    def start_apiserver(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Recover from `stop_apiserver`: same port, same certificates, same data.

        The apiserver's clients start afresh too. Kept running, their watches came back
        after a client-go backoff that grows with the outage: a Deployment got its ready
        pod 24 s after a 15 s outage, 56 s after 30 s, waited out in a chart's `--wait`
        (the faults tests' 90 s installs). Restarted, they list at once (2 s). kwok was
        stopped before the outage: a kwok killed holds its node Leases for their 40 s,
        and the new one waits for them.
        """
        self.apiserver.start()
        self.wait_ready(timeout)
        for process in self.processes[1:]:
            process.stop(grace=0.0)
            process.start()
        wait_for(f"{self.name} usable again", self._usable, timeout, self.processes)

    def ready(self) -> bool:
        return self.api.ok("/readyz")

    def wait_ready(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        wait_for(f"{self.name} apiserver /readyz", self.ready, timeout, [self.apiserver])

    def start_workloads_plane(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """After /readyz: fake nodes, then the controllers and kwok; wait until usable."""
        if self.shape.pods:
            for node in FAKE_NODES:
                self._create("/api/v1/nodes", components.fake_node(node))
        for process in self.processes[1:]:
            process.start()
        wait_for(
            f"{self.name} nodes Ready and default ServiceAccount",
            self._usable,
            timeout,
            self.processes,
        )

    def stop(self) -> None:
        # Reverse start order: clients of the apiserver first, so none of them logs a
        # storm of connection errors while the apiserver shuts down.
        for process in (self.kwok, self.scheduler, self.controller_manager, self.apiserver):
            process.stop()

    def _create(self, path: str, body: dict[str, object]) -> None:
        response = self.api.post(path, body)
        # 409: already there, which is all this wants.
        if response.status not in (200, 201, 409):
            raise TestBedError(f"{self.name}: POST {path} -> {response.status} {response.body}")

    def _usable(self) -> bool:
        # "Usable" = what a chart install needs: schedulable Ready nodes (kwok +
        # node-lifecycle) and the default ServiceAccount (kcm's serviceaccount controller;
        # without it pod creation is refused).
        nodes = self._nodes_ready() if self.shape.pods else True
        return nodes and self.api.ok("/api/v1/namespaces/default/serviceaccounts/default")

    def _nodes_ready(self) -> bool:
        response = self.api.try_get("/api/v1/nodes")
        if response is None or response.status != 200:
            return False
        ready = [item for item in response.body["items"] if _node_ready(item)]
        return len(ready) >= len(FAKE_NODES)

    def _port_closed(self) -> bool:
        return not port_open(self.ports.apiserver)


def _node_ready(node: dict[str, Any]) -> bool:
    conditions = node.get("status", {}).get("conditions", [])
    taints = node.get("spec", {}).get("taints", [])
    is_ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    # The not-ready taint lingers briefly after Ready; pods would stay Pending meanwhile.
    return is_ready and not any(t.get("effect") == "NoSchedule" for t in taints)


def _kubeconfigs(
    name: str, workdir: Path, directory: Path, server: str, pki: Pki
) -> tuple[Path, Path, Path]:
    """The admin's (in the bed's kubeconfig directory), the controller manager's and the
    scheduler's kubeconfigs."""
    admin = write_kubeconfig(
        workdir / KUBECONFIG_DIR / f"{name}.yaml",
        name,
        server,
        pki.ca.cert,
        pki.client("admin"),
        ADMIN_USER,
    )
    kcm_config = write_kubeconfig(
        directory / "controller-manager.yaml",
        name,
        server,
        pki.ca.cert,
        pki.client("controller-manager"),
        CONTROLLER_MANAGER_USER,
    )
    scheduler_config = write_kubeconfig(
        directory / "scheduler.yaml",
        name,
        server,
        pki.ca.cert,
        pki.client("scheduler"),
        SCHEDULER_USER,
    )
    return admin, kcm_config, scheduler_config


def _process(
    name: str,
    component: str,
    argv: list[str],
    workdir: Path,
    shape: components.Shape,
    tier: int = 0,
) -> ManagedProcess:
    """One of the cluster's processes, logging to logs/<cluster>-<component>.log; a light
    shape caps the Go heap of the components that have a limit."""
    log = workdir / "logs" / f"{name}-{component}.log"
    env = None
    if shape.light and component in components.LIGHT_MEMORY_LIMIT:
        limit = components.LIGHT_MEMORY_LIMIT[component]
        env = {**os.environ, "GOMEMLIMIT": limit, "GOGC": components.LIGHT_GOGC}
    return ManagedProcess(f"{name}/{component}", argv, log, workdir / "pids", env=env, tier=tier)


def new_cluster(
    name: str,
    workdir: Path,
    binaries: Binaries,
    etcd_url: str,
    etcd_prefix: str,
    shape: components.Shape = components.DEFAULT_SHAPE,
) -> Cluster:
    """Write the cluster's PKI and kubeconfigs and prepare (not start) its processes."""
    directory = workdir / "clusters" / name
    ports = components.Ports(free_port(), free_port(), free_port(), free_port())
    pki = write_pki(directory / "pki", components.SERVICE_IP)
    server = f"https://127.0.0.1:{ports.apiserver}"
    admin, kcm_config, scheduler_config = _kubeconfigs(name, workdir, directory, server, pki)

    def process(component: str, argv: list[str], tier: int = 0) -> ManagedProcess:
        return _process(name, component, argv, workdir, shape, tier)

    audit = directory / "audit" if shape.audit else None
    controllers = components.LIGHT_CONTROLLERS if shape.light else "*"

    b = binaries
    return Cluster(
        name=name,
        workdir=directory,
        kubeconfig=admin,
        ports=ports,
        pki=pki,
        apiserver=process(
            "kube-apiserver",
            components.apiserver_args(
                b.kube_apiserver,
                pki,
                etcd_url,
                etcd_prefix,
                ports.apiserver,
                directory / "apiserver-certs",
            )
            + components.light_apiserver_args(audit, shape.light),
            tier=1,
        ),
        controller_manager=process(
            "kube-controller-manager",
            components.controller_manager_args(
                b.kube_controller_manager, pki, kcm_config, ports.controller_manager, controllers
            ),
        ),
        scheduler=process(
            "kube-scheduler",
            components.scheduler_args(b.kube_scheduler, scheduler_config, ports.scheduler),
        ),
        kwok=process("kwok", components.kwok_args(b.kwok, admin, ports.kwok)),
        api=ApiClient(server, pki.ca.cert, pki.client("admin")),
        shape=shape,
    )


@dataclass
class TestBed:
    """A set of named clusters sharing one etcd, all under `workdir`."""

    __test__ = False  # not a pytest test class despite the name

    workdir: Path
    binaries: Binaries
    etcd: Etcd | None = None
    clusters: dict[str, Cluster] = field(default_factory=dict)
    shapes: dict[str, components.Shape] = field(default_factory=dict)
    _stopped: bool = False

    @classmethod
    def start(
        cls,
        names: Sequence[str],
        workdir: Path,
        *,
        binaries: Binaries | None = None,
        detach: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
        shapes: Mapping[str, components.Shape] | None = None,
        parallel: int | None = None,
    ) -> TestBed:
        """Start every cluster in parallel and return once all are usable.

        Always a fresh start: data, keys and logs of an earlier bed in `workdir` are
        removed first. `detach=True` (the `up` command) leaves the processes running
        after this Python process exits; otherwise an atexit hook stops them, so a
        crashed or interrupted test session does not leave control planes behind.
        `shapes`: cluster name -> `components.Shape` (default: full). `parallel`: how many
        clusters start at once (default: all).
        """
        workdir = workdir.resolve()
        for stale in ("etcd", "clusters", KUBECONFIG_DIR, "logs"):
            shutil.rmtree(workdir / stale, ignore_errors=True)
        workdir.mkdir(parents=True, exist_ok=True)
        bed = cls(workdir, binaries or binaries_module.resolve(), shapes=dict(shapes or {}))
        if not detach:
            atexit.register(bed.stop)
        try:
            bed._start_etcd(timeout)
            # One thread per cluster: each starts its apiserver at once, so on two
            # cores their start-ups overlap; that is what keeps four clusters fast.
            with ThreadPoolExecutor(max_workers=max(parallel or len(names), 1)) as pool:
                list(pool.map(lambda name: bed._start_cluster(name, timeout), names))
            bed.clusters = {name: bed.clusters[name] for name in names}  # caller's order
        except BaseException:
            bed.stop()
            raise
        return bed

    def _start_etcd(self, timeout: float) -> None:
        for attempt in range(1, _START_ATTEMPTS + 1):
            self.etcd = Etcd(self.binaries.etcd, self.workdir)
            try:
                self.etcd.start(timeout)
                return
            except TestBedError as error:
                self.etcd.stop()
                shutil.rmtree(self.workdir / "etcd", ignore_errors=True)
                if attempt == _START_ATTEMPTS or not port_clash(error):
                    raise

    def _start_cluster(self, name: str, timeout: float) -> None:
        assert self.etcd is not None
        for attempt in range(1, _START_ATTEMPTS + 1):
            # A fresh etcd prefix per attempt, so a retry never sees half the objects
            # of the attempt that lost its port.
            prefix = f"/clusters/{name}" + (f"-{attempt}" if attempt > 1 else "")
            shape = self.shapes.get(name, components.DEFAULT_SHAPE)
            cluster = new_cluster(name, self.workdir, self.binaries, self.etcd.url, prefix, shape)
            self.clusters[name] = cluster
            try:
                cluster.apiserver.start()
                cluster.wait_ready(timeout)
                cluster.start_workloads_plane(timeout)
                return
            except TestBedError as error:
                cluster.stop()
                if attempt == _START_ATTEMPTS or not port_clash(error):
                    raise

    def kubeconfigs(self) -> dict[str, Path]:
        return {name: cluster.kubeconfig for name, cluster in self.clusters.items()}

    def stop(self) -> None:
        """Stop everything this TestBed started. Idempotent; safe from atexit."""
        if self._stopped:
            return
        self._stopped = True
        clusters = list(self.clusters.values())
        if clusters:
            with ThreadPoolExecutor(max_workers=len(clusters)) as pool:
                list(pool.map(Cluster.stop, clusters))
        if self.etcd is not None:
            self.etcd.stop()
        # Belt and braces: anything recorded but not known to these objects (a
        # process from an aborted start) goes too.
        kill_recorded(self.workdir)

    def remove(self) -> None:
        """Stop, then delete the working directory (data, keys, logs)."""
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
