"""Helpers for the tenant-identity e2e tests (`e2e/test_security_identity*.py`): the
tenant's ServiceAccount name, grants on the one test cluster, `kubectl auth can-i` as an
identity (a real SubjectAccessReview), and the Rancher-proxy stand-in with its owner binding.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from e2e.testbed import helpers
from e2e.testbed.controlplane import Cluster as BedCluster
from e2e.testbed.helpers import get_stack, kubectl, kubectl_run
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

    def probe() -> dict[str, Any] | None:
        found = get_stack(management, meta["namespace"], meta["name"])
        current = found.get("status") or {}
        done = current.get("phase") not in (None, "Pending", "Deploying")
        fresh = current.get("observedGeneration") == found["metadata"]["generation"]
        return current if done and fresh else None

    return eventually(f"Stack {meta['namespace']}/{meta['name']} to settle", probe, timeout)
