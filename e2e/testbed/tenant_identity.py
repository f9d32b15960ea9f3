"""Helpers for the tenant-identity e2e tests (`e2e/test_security_identity*.py`): the
tenant's ServiceAccount name, grants on the one test cluster, `kubectl auth can-i` as an
identity (a real SubjectAccessReview), and the Rancher-proxy stand-in with its owner binding;
`bound_identity`, who Herd made a tenant downstream (`e2e/test_security_ownership.py`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from e2e.testbed import helpers
from e2e.testbed.controlplane import Cluster as BedCluster
from e2e.testbed.helpers import kubectl, kubectl_run
from e2e.testbed.herd_controller import settled_stack
from e2e.testbed.rancher_proxy import RancherProxy
from herd.api.grants import parse_grant
from herd.names import TENANT_LABEL
from herd.plan.tenancy import Grants, grants_for

ADDON_NAMESPACES = ("suse-observability", "cattle-neuvector-system")
CLUSTER_ID = "c-m-idproxy1"
WAIT = 180.0
T = TypeVar("T")


def account(tenant: str) -> str:
    return f"system:serviceaccount:herd-tenants:tenant-{tenant}"


def eventually(what: str, probe: Callable[[], T | None], timeout: float = WAIT) -> T:
    """`helpers.eventually` with these tests' default bound."""
    return helpers.eventually(what, probe, timeout)


def grant_body(tenant: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "herd.suse.com/v1",
        "kind": "ClusterGrant",
        "metadata": {"name": tenant},
        "spec": {
            "namespaces": [tenant],
            "clusters": {"clusterIds": [CLUSTER_ID]},
            "targetNamespaces": [f"{tenant}-*"],
            **spec,
        },
    }


def grants_of(tenant: str, **spec: Any) -> Grants:
    return grants_for(
        tenant,
        [parse_grant(grant_body(tenant, **spec))],
        admin_namespace="herd-system",
        addon_namespaces=ADDON_NAMESPACES,
    )


def bed_kubectl(bed: BedCluster, *args: str, stdin: str | None = None) -> str:
    return kubectl(bed.kubeconfig, *args, stdin=stdin, check=True)


def can(bed: BedCluster, user: str, *question: str) -> bool:
    done = kubectl_run(bed, "auth", "can-i", *question, "--as", user, timeout=60)
    assert done.stdout.strip() in ("yes", "no"), done.stderr
    return done.stdout.strip() == "yes"


def settles_to(bed: BedCluster, user: str, answer: bool, *question: str) -> bool:
    """RBAC changes reach the authorizer within seconds: wait for `answer`, bounded."""
    deadline = time.monotonic() + 60
    while can(bed, user, *question) is not answer:
        if time.monotonic() > deadline:
            return False
        time.sleep(1)
    return True


def bindings_naming(bed: BedCluster, subject: str) -> list[str]:
    found = json.loads(
        bed_kubectl(bed, "get", "rolebindings,clusterrolebindings", "-A", "-o", "json")
    )
    return [
        f"{item['kind']} {item['metadata'].get('namespace', '')}/{item['metadata']['name']}"
        for item in found["items"]
        if any(s.get("name") == subject for s in item.get("subjects") or [])
    ]


def remove_tenant_rbac(bed: BedCluster, *tenants: str) -> None:
    for tenant in tenants:
        kubectl(
            bed.kubeconfig, "delete", "rolebindings,clusterroles,clusterrolebindings", "-A",
            "-l", f"{TENANT_LABEL}={tenant}", check=False,
        )  # fmt: skip


@contextmanager
def rancher_proxy(bed: BedCluster, directory: Path) -> Iterator[RancherProxy]:
    """The stand-in in front of `bed` as `CLUSTER_ID`, its Rancher user `u-herd` bound to
    cluster-admin downstream (a cluster owner, as Rancher's RBAC sync makes it)."""
    owner = bed_kubectl(
        bed, "create", "clusterrolebinding", "rancher-standin-u-herd",
        "--clusterrole=cluster-admin", "--user=u-herd", "--dry-run=client", "-o", "yaml",
    )  # fmt: skip
    bed_kubectl(bed, "apply", "-f", "-", stdin=owner)
    running = RancherProxy(directory, {CLUSTER_ID: bed})
    running.start()
    try:
        yield running
    finally:
        running.stop()
        kubectl(
            bed.kubeconfig, "delete", "clusterrolebinding", "rancher-standin-u-herd", check=False
        )


def settled(management: BedCluster, body: dict[str, Any], timeout: float = WAIT) -> dict[str, Any]:
    """The Stack's status once its current generation's pass has ended."""
    meta = body["metadata"]
    return settled_stack(management, meta["namespace"], meta["name"], timeout)


@dataclass(frozen=True)
class Identity:
    """The tenant's downstream identity, as Herd bound it (read from the RoleBinding)."""

    kind: str
    name: str
    namespace: str = ""

    @property
    def user(self) -> str:
        if self.kind == "ServiceAccount":
            return f"system:serviceaccount:{self.namespace}:{self.name}"
        return self.name

    def helm_flags(self) -> list[str]:
        groups = [] if self.kind == "ServiceAccount" else ["--kube-as-group=herd:tenants"]
        return [f"--kube-as-user={self.user}", *groups]

    def kubectl_flags(self) -> list[str]:
        groups = [] if self.kind == "ServiceAccount" else ["--as-group=herd:tenants"]
        return [f"--as={self.user}", *groups]

    def values(self) -> dict[str, str]:
        return {"kind": self.kind, "name": self.name, "namespace": self.namespace}


def bound_identity(cluster: BedCluster, namespace: str, tenant: str) -> Identity:
    """Who Herd made the tenant in `namespace` downstream (its RoleBinding's subject)."""
    done = kubectl_run(cluster, "get", "rolebindings", "-n", namespace, "-o", "json")
    assert done.returncode == 0, done.stderr
    for binding in json.loads(done.stdout)["items"]:
        for subject in binding.get("subjects") or []:
            text = f"{subject.get('namespace', '')}/{subject['name']}"
            if tenant in text and subject["kind"] in ("User", "ServiceAccount"):
                return Identity(subject["kind"], subject["name"], subject.get("namespace", ""))
    raise AssertionError(f"no RoleBinding of tenant {tenant} in {namespace}")
