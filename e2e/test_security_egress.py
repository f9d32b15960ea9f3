"""Egress and least privilege, through the real controller with install/'s RBAC.

- SSRF: a tenant Stack whose chart repository is a loopback port where a real listener
  waits, the cloud metadata address, or the management API server is refused with a row
  naming `spec.charts[0].repo` and the rule, and no connection reaches the listener (it
  counts what it accepts). The controller runs with only its own repository's host:port
  allowed (not the suite's loopback allowance).
- Impersonation: the controller may impersonate ServiceAccounts only in namespaces a
  ClusterGrant names, through the RoleBinding it keeps there; a tenant Stack's values.from
  Secret is read as its ServiceAccount; kube-system and herd-system stay out of reach, and
  the admission policy refuses a RoleBinding the controller would make there.
- A kubeconfig Secret whose user has an `exec` entry is refused: the cluster is skipped
  with a reason naming the Secret, and the program never runs (no marker file).
"""

from __future__ import annotations

import base64
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.testbed import helpers
from e2e.testbed.chartrepo import ChartRepo, package_charts
from e2e.testbed.controlplane import Cluster as BedCluster
from e2e.testbed.helpers import kubectl, kubectl_run
from e2e.testbed.herd_controller import (
    Controller,
    prepare_management,
    service_account_kubeconfig,
    settled_stack,
)

CHARTS = Path(__file__).resolve().parent / "charts-tenancy"
ADMIN_NS = "herd-system"
TENANT = "eg-a"
OTHER = "eg-b"
CLUSTER = "eg-downstream"
EXEC_CLUSTER = "eg-exec"
CONTROLLER = "system:serviceaccount:herd-system:herd-controller"
WAIT = 150.0


class Listener:
    """A real TCP listener on loopback that counts the connections it accepts."""

    def __init__(self) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        self.accepted = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return
            self.accepted += 1
            connection.close()

    def close(self) -> None:
        self._socket.close()


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def grant(name: str, namespaces: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "herd.suse.com/v1",
        "kind": "ClusterGrant",
        "metadata": {"name": name},
        "spec": {
            "namespaces": namespaces,
            "clusters": {"clusterIds": [CLUSTER]},
            "targetNamespaces": [f"{namespaces[0]}-*"],
        },
    }


def kubeconfig_secret(name: str, content: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": ADMIN_NS,
            "labels": {"herd.suse.com/cluster": "true"},
        },
        "data": {"kubeconfig": _b64(content)},
    }


def stack(namespace: str, name: str, repo: str, cluster: str, **extra: Any) -> dict[str, Any]:
    chart: dict[str, Any] = {
        "name": "probe",
        "chart": "tenant-probe",
        "repo": repo,
        "version": "0.1.0",
        "namespace": f"{namespace}-apps",
        "releaseName": name,
        **extra.pop("chart", {}),
    }
    return {
        "apiVersion": "herd.suse.com/v1",
        "kind": "Stack",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"targets": {"clusterIds": [cluster]}, "charts": [chart], **extra},
    }


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChartRepo]:
    served = package_charts([CHARTS / "tenant-probe"], tmp_path_factory.mktemp("egress-charts"))
    with ChartRepo.serve(served) as running:
        yield running


@pytest.fixture(scope="module")
def listener() -> Iterator[Listener]:
    running = Listener()
    yield running
    running.close()


@pytest.fixture(scope="module")
def marker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("egress-exec") / "exec-ran"


@pytest.fixture(scope="module")
def controller(
    management: BedCluster,
    downstream: list[BedCluster],
    repo: ChartRepo,
    marker: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Controller]:
    mgmt = management.kubeconfig
    prepare_management(mgmt, [])
    for namespace in (TENANT, OTHER):
        kubectl(mgmt, "create", "namespace", namespace, check=False)
    setup = [
        kubeconfig_secret(CLUSTER, downstream[0].kubeconfig.read_text()),
        kubeconfig_secret(EXEC_CLUSTER, exec_kubeconfig(marker)),
        grant(TENANT, [TENANT, "kube-system", ADMIN_NS]),
        *values_access(),
    ]
    kubectl(mgmt, "apply", "-f", "-", stdin=yaml.safe_dump_all(setup))
    directory = tmp_path_factory.mktemp("egress-controller")
    running = Controller(
        "egress",
        directory,
        service_account_kubeconfig(mgmt, directory / "sa.yaml"),
        ADMIN_NS,
        settings={
            "HERD_RANCHER_NAMESPACES": "",
            "HERD_RESYNC_SECONDS": "20",
            "HERD_RETRY_SECONDS": "3",
            "HERD_FLEET_SECONDS": "1",
            "HERD_EGRESS_ALLOW_CIDRS": "",  # not the suite's loopback allowance
            "HERD_EGRESS_ALLOW_HOSTS": repo.url.split("//", 1)[1].split("/", 1)[0],
        },
        also_watch=(TENANT,),
    )
    running.start()
    try:
        yield running
    finally:
        for namespace in (TENANT, ADMIN_NS):
            # The exec cluster is skipped, never checked: a Stack on it would hold its
            # deletion for it (by design) until the 120 s below ran out. Give it up.
            kubectl(mgmt, "annotate", "stacks", "--all", "-n", namespace, "--overwrite",
                    f"herd.suse.com/orphan-clusters={EXEC_CLUSTER}", check=False)  # fmt: skip
            kubectl(mgmt, "delete", "stacks", "--all", "-n", namespace, "--timeout=120s",
                    check=False, timeout=180)  # fmt: skip
        running.stop()
        kubectl(mgmt, "delete", "clustergrants", TENANT, OTHER, "--ignore-not-found", check=False)
        kubectl(mgmt, "delete", "secret", CLUSTER, EXEC_CLUSTER, "-n", ADMIN_NS, check=False)


def exec_kubeconfig(marker: Path) -> str:
    """A kubeconfig whose user runs a program (it would create `marker`) for a token."""
    credential = json.dumps(
        {"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
         "status": {"token": "from-exec"}}
    )  # fmt: skip
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
            "users": [
                {
                    "name": "u",
                    "user": {
                        "exec": {
                            "apiVersion": "client.authentication.k8s.io/v1",
                            "command": "/bin/sh",
                            "args": ["-c", f"touch {marker}; echo '{credential}'"],
                            "interactiveMode": "Never",
                        }
                    },
                }
            ],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "c",
        }
    )


def values_access() -> list[dict[str, Any]]:
    """A ServiceAccount of the tenant that may read one values Secret."""
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": "deployer", "namespace": TENANT}},
        {"apiVersion": "v1", "kind": "Secret",
         "metadata": {"name": "probe-values", "namespace": TENANT},
         "data": {"values.yaml": _b64("greeting: from-the-secret\n")}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": "read-values", "namespace": TENANT},
         "rules": [{"apiGroups": [""], "resources": ["secrets"],
                    "resourceNames": ["probe-values"], "verbs": ["get"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": "read-values", "namespace": TENANT},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                     "name": "read-values"},
         "subjects": [{"kind": "ServiceAccount", "name": "deployer", "namespace": TENANT}]},
    ]  # fmt: skip


def apply(management: BedCluster, body: dict[str, Any]) -> None:
    kubectl(management.kubeconfig, "apply", "-f", "-", stdin=yaml.safe_dump(body))


def settled(management: BedCluster, body: dict[str, Any]) -> dict[str, Any]:
    meta = body["metadata"]
    return settled_stack(management.kubeconfig, meta["namespace"], meta["name"], WAIT)


def only_row(found: dict[str, Any]) -> dict[str, Any]:
    (row,) = found.get("deployments") or []
    return row


def can_i(management: BedCluster, verb: str, resource: str, namespace: str) -> str:
    done = kubectl_run(
        management, "auth", "can-i", verb, resource, "-n", namespace, "--as", CONTROLLER
    )
    return done.stdout.strip()


def api_server_port(management: BedCluster) -> int:
    server = yaml.safe_load(management.kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
    return int(server.rsplit(":", 1)[1])


# -- SSRF ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "rule"),
    [
        ("listener", "a loopback address"),
        ("metadata", "the cloud metadata address"),
        ("api-server", "the management cluster's API server"),
    ],
)
def test_a_tenant_repository_on_a_denied_host_is_refused_without_contact(
    controller: Controller,
    management: BedCluster,
    listener: Listener,
    target: str,
    rule: str,
) -> None:
    urls = {
        "listener": f"http://127.0.0.1:{listener.port}/charts",
        "metadata": "http://169.254.169.254/latest/meta-data",
        "api-server": f"https://127.0.0.1:{api_server_port(management)}",
    }
    body = stack(TENANT, f"eg-ssrf-{target}", urls[target], CLUSTER)
    apply(management, body)
    row = only_row(settled(management, body))
    assert row["status"] == "Failed", row
    message = row["message"]
    assert message.startswith("spec.charts[0].repo: not allowed for a tenant Stack, "), message
    assert rule in message and "nothing contacted" in message, message
    for tell in ("refused", "timeout", "404", "x509", "EOF", "unreachable"):
        assert tell not in message, message
    assert listener.accepted == 0
    # No helm process was started for the refused repository either.
    assert not [c for c in controller.helm_calls() if any(urls[target] in a for a in c.args)]


def test_an_allowed_repository_deploys_with_values_read_as_the_service_account(
    controller: Controller, management: BedCluster, repo: ChartRepo, downstream: list[BedCluster]
) -> None:
    body = stack(
        TENANT,
        "eg-allowed",
        repo.url,
        CLUSTER,
        serviceAccountName="deployer",
        chart={"values": {"from": [{"kind": "Secret", "name": "probe-values"}]}},
    )
    apply(management, body)
    row = only_row(settled(management, body))
    assert row["status"] == "Deployed", row


# -- impersonation only where granted ------------------------------------------------------


def test_the_controller_may_impersonate_only_in_granted_namespaces(
    controller: Controller, management: BedCluster
) -> None:
    mgmt = management.kubeconfig

    def bound(namespace: str) -> bool:
        out = kubectl(mgmt, "get", "rolebinding", "herd-impersonate-serviceaccounts", "-n",
                      namespace, "--ignore-not-found", "-o", "name")  # fmt: skip
        return bool(out.strip())

    helpers.eventually("the RoleBinding in the granted namespace", lambda: bound(TENANT), WAIT)
    assert can_i(management, "impersonate", "serviceaccounts", TENANT) == "yes"
    # The grant also names kube-system and herd-system: Herd never binds there.
    for namespace in ("kube-system", ADMIN_NS, "default"):
        assert not bound(namespace)
        assert can_i(management, "impersonate", "serviceaccounts", namespace) == "no"
    # A new grant adds its namespace; deleting it removes the RoleBinding again.
    apply(management, grant(OTHER, [OTHER]))
    helpers.eventually("the RoleBinding of a new grant", lambda: bound(OTHER), WAIT)
    kubectl(mgmt, "delete", "clustergrant", OTHER)
    helpers.eventually("the RoleBinding of a deleted grant to go", lambda: not bound(OTHER), WAIT)
    assert can_i(management, "impersonate", "serviceaccounts", OTHER) == "no"


def test_the_api_server_refuses_the_controller_a_binding_in_kube_system(
    controller: Controller, management: BedCluster
) -> None:
    # RBAC alone would let the controller's identity create it: the admission policy of
    # install/ is what refuses it.
    done = kubectl_run(
        management, "--as", CONTROLLER,
        "create", "rolebinding", "herd-impersonate-serviceaccounts", "-n", "kube-system",
        "--clusterrole=herd-impersonate-serviceaccounts",
        "--serviceaccount=herd-system:herd-controller",
    )  # fmt: skip
    assert done.returncode != 0
    assert "herd-impersonation-bindings" in done.stderr, done.stderr
    assert can_i(management, "impersonate", "serviceaccounts", "kube-system") == "no"
    # Nor may it delete a RoleBinding that is not one of its own.
    deleted = kubectl_run(
        management, "--as", CONTROLLER, "delete", "rolebinding", "read-values", "-n", TENANT
    )
    assert deleted.returncode != 0
    assert "herd-impersonation-bindings" in deleted.stderr, deleted.stderr


# -- kubeconfigs that run programs -------------------------------------------------------


def test_a_kubeconfig_with_exec_is_skipped_and_never_run(
    controller: Controller, management: BedCluster, repo: ChartRepo, marker: Path
) -> None:
    body = stack(ADMIN_NS, "eg-exec-admin", repo.url, EXEC_CLUSTER)
    apply(management, body)
    found = settled(management, body)
    skipped = {s["clusterId"]: s["reason"] for s in found.get("skippedClusters") or []}
    reason = skipped[EXEC_CLUSTER]
    assert f"Secret {ADMIN_NS}/{EXEC_CLUSTER}" in reason, reason
    assert "exec or auth-provider" in reason and "HERD_ALLOW_EXEC_KUBECONFIGS" in reason
    assert "/bin/sh" not in reason and "touch" not in reason
    assert not marker.exists()
