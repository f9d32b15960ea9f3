"""`herd operator` as a process on the test bed, driven only through kubectl.

Callers: the operator e2e modules (`test_operator`, `test_operator_faults`,
`test_operator_gpu`, `test_stages`, `test_cluster_values`). `run_operator` prepares a
Rancher-shaped management cluster (CRDs, `install/`, a Rancher namespace of the test's
own with its downstream clusters, a ClusterGrant for the Stacks in `default`) and runs
the controller with the install/ ServiceAccount's token, so its RBAC is what is tested.
`Operator` reads one Stack, its status and Events back.
"""

from __future__ import annotations

import os
import signal
import subprocess
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from e2e.testbed import faults, rancher
from e2e.testbed.controlplane import Cluster as BedCluster
from e2e.testbed.helpers import eventually, get_stack, kubectl, object_events
from e2e.testbed.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = ROOT / ".venv" / "bin"
CONTROLLER_NS = "herd-system"
STACK = "op-stack"  # the Stack `Operator` looks at unless told another name
BACKOFF_MAX_SECONDS = "8"


def helm_releases(cluster: BedCluster, namespace: str) -> dict[str, dict[str, Any]]:
    """Release name -> `helm list` row on a bed cluster, every state included."""
    return faults.releases(cluster.kubeconfig, namespace)


@dataclass
class Operator:
    management: BedCluster
    log: Path
    metrics_port: int
    name: str = STACK  # the Stack the helpers below look at

    def stack(self) -> dict[str, Any]:
        return get_stack(self.management, "default", self.name, check=False)

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = self.stack().get("status") or {}
        return status

    def apply(self, body: dict[str, Any]) -> None:
        kubectl(self.management.kubeconfig, "apply", "-f", "-", stdin=yaml.safe_dump(body))

    def settled(self, phase: str, generation: int | None = None) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            stack = self.stack()
            status = stack.get("status") or {}
            wanted = generation or stack.get("metadata", {}).get("generation")
            if status.get("phase") == phase and status.get("observedGeneration") == wanted:
                return status
            return None

        return eventually(f"phase {phase}", probe)

    def events(self) -> list[dict[str, Any]]:
        return object_events(self.management, "default", self.name)

    def metrics(self) -> str:
        """The operator's Prometheus exposition text."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            return str(response.read().decode())


def controller_kubeconfig(management: BedCluster, directory: Path) -> Path:
    """The management kubeconfig with the install/ ServiceAccount's token as its user."""
    token = kubectl(
        management.kubeconfig,
        "create",
        "token",
        "herd-controller",
        "-n",
        CONTROLLER_NS,
        "--duration",
        "2h",
    ).strip()
    config = yaml.safe_load(management.kubeconfig.read_text())
    for user in config["users"]:
        user["user"] = {"token": token}
    path = directory / "controller.yaml"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def grant_fleet_namespace(management: BedCluster, namespace: str) -> None:
    """install/ grants fleet-default; a test's Rancher namespace gets the same Role."""
    roles = [
        d
        for d in yaml.safe_load_all((ROOT / "install" / "10-rbac.yaml").read_text())
        if d["kind"] in ("Role", "RoleBinding") and d["metadata"]["namespace"] == "fleet-default"
    ]
    for doc in roles:
        doc["metadata"]["namespace"] = namespace
    kubectl(management.kubeconfig, "apply", "-f", "-", stdin=yaml.safe_dump_all(roles))


def prepare_fleet(
    management: BedCluster,
    downstream: list[BedCluster],
    *,
    fleet_ns: str,
    ids: dict[str, str],
    labels: dict[str, dict[str, str]],
) -> str:
    """CRDs, install/, the test's Rancher namespace of clusters and the ClusterGrant for
    the Stacks in `default` (its name is returned)."""
    rancher.register_clusters(
        management.kubeconfig,
        [
            rancher.RancherCluster(f"op-{c.name}", ids[c.name], c.kubeconfig, dict(labels[c.name]))
            for c in downstream
        ],
        namespace=fleet_ns,
    )
    kubectl(management.kubeconfig, "apply", "-f", str(ROOT / "crds"))
    for fleet in ("fleet-default", "fleet-local"):  # install/ has Roles in both
        kubectl(management.kubeconfig, "create", "namespace", fleet, check=False)
    kubectl(management.kubeconfig, "apply", "-f", str(ROOT / "install"))
    grant_fleet_namespace(management, fleet_ns)
    # The Stacks live in `default`, outside Herd's namespace: a ClusterGrant gives them the
    # test's clusters (by id, whatever their labels) and the op-* / ft-* namespaces there.
    grant = f"test-{fleet_ns}"
    kubectl(
        management.kubeconfig,
        "apply",
        "-f",
        "-",
        stdin=yaml.safe_dump(
            {
                "apiVersion": "herd.suse.com/v1",
                "kind": "ClusterGrant",
                "metadata": {"name": grant},
                "spec": {
                    "namespaces": ["default"],
                    "clusters": {"clusterIds": sorted(ids.values())},
                    "targetNamespaces": ["op-*", "ft-*"],
                },
            }
        ),
    )
    return grant


@contextmanager
def run_operator(
    management: BedCluster,
    downstream: list[BedCluster],
    workdir: Path,
    *,
    fleet_ns: str,
    ids: dict[str, str],
    labels: dict[str, dict[str, str]],
    env: dict[str, str] | None = None,
) -> Iterator[Operator]:
    """`herd operator` as a process, with its own Rancher namespace of downstream clusters."""
    grant = prepare_fleet(management, downstream, fleet_ns=fleet_ns, ids=ids, labels=labels)
    log = workdir / "operator.log"
    metrics_port = free_port()
    variables = {
        **os.environ,
        "KUBECONFIG": str(controller_kubeconfig(management, workdir)),
        "HERD_NAMESPACE": CONTROLLER_NS,
        "HERD_RANCHER_NAMESPACES": fleet_ns,
        "HERD_RESYNC_SECONDS": "10",
        "HERD_RETRY_SECONDS": "3",
        "HERD_FLEET_SECONDS": "1",
        # A cluster back from an outage is retried within seconds, not after the doubled
        # backoff (up to 300 s) its outage built up: the faults tests wait for that retry.
        "HERD_BACKOFF_MAX_SECONDS": BACKOFF_MAX_SECONDS,
        "HERD_METRICS_PORT": str(metrics_port),
        "HERD_HEALTH_PORT": str(free_port()),
        "HERD_WORKDIR": str(workdir / "work"),  # never the shared default under /tmp
        **(env or {}),
    }
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(VENV_BIN / "herd"), "operator", "--namespace", "default"],
            env=variables,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        try:
            eventually(
                "the operator to start", lambda: "Herd operator started" in log.read_text(), 60
            )
        except AssertionError as error:
            raise AssertionError(f"{error}\n{log.read_text()[-3000:]}") from None
        yield Operator(management, log, metrics_port)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        kubectl(management.kubeconfig, "delete", "clustergrant", grant, check=False)
