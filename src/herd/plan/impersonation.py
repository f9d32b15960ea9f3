"""Where the controller may impersonate ServiceAccounts: the RoleBindings that should exist. Pure.

Herd reads a tenant Stack's `values.from` and chart-source Secrets as the Stack's
`spec.serviceAccountName` (`herd.kube.values_from`), which needs `impersonate` on that
ServiceAccount.
The install does not give that cluster-wide: it ships the ClusterRole `CLUSTER_ROLE`
unbound, and lets the controller `bind` it (that one ClusterRole only). The controller
keeps one RoleBinding `ROLE_BINDING` of it to itself in each namespace a valid ClusterGrant
names (`herd.operator.impersonation` does the I/O), and removes it when no grant names the
namespace any more. Never in the namespaces of `protected`: kube-*, cattle-*, fleet-*, the
controller's own namespace and the Rancher namespaces, whatever a grant says (a grant
naming one is still a grant for Stacks there; Herd just cannot read as their accounts).

Callers: `herd.operator.impersonation`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

from herd.names import MANAGED_LABEL

CLUSTER_ROLE = "herd-impersonate-serviceaccounts"
ROLE_BINDING = "herd-impersonate-serviceaccounts"
PROTECTED_PREFIXES = ("kube-", "cattle-", "fleet-")
SA_PREFIX = "system:serviceaccount:"


@dataclass(frozen=True)
class BindingChanges:
    create: tuple[str, ...]  # namespaces to bind in
    delete: tuple[str, ...]  # namespaces to unbind


def protected(namespace: str, own: Collection[str]) -> bool:
    """A namespace where Herd never impersonates: system, Rancher, Fleet, Herd's own."""
    return namespace in own or namespace.startswith(PROTECTED_PREFIXES)


def wanted_namespaces(granted: Iterable[str], own: Collection[str]) -> set[str]:
    """The namespaces that should hold the RoleBinding: granted ones, never protected."""
    return {ns for ns in granted if ns and not protected(ns, own)}


def changes(wanted: Collection[str], existing: Collection[str]) -> BindingChanges:
    """What to create and delete so that exactly `wanted` holds the RoleBinding."""
    return BindingChanges(
        create=tuple(sorted(set(wanted) - set(existing))),
        delete=tuple(sorted(set(existing) - set(wanted))),
    )


def subject(username: str) -> dict[str, str]:
    """The RBAC subject of the controller's own identity (a ServiceAccount in a pod)."""
    if username.startswith(SA_PREFIX) and username.count(":") == 3:
        namespace, name = username[len(SA_PREFIX) :].split(":")
        return {"kind": "ServiceAccount", "name": name, "namespace": namespace}
    return {"kind": "User", "name": username, "apiGroup": "rbac.authorization.k8s.io"}


def role_binding(namespace: str, controller: dict[str, str]) -> dict[str, Any]:
    """The RoleBinding of `CLUSTER_ROLE` to the controller in `namespace`."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {
            "name": ROLE_BINDING,
            "namespace": namespace,
            "labels": {MANAGED_LABEL: "true", "app.kubernetes.io/managed-by": "herd"},
        },
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": CLUSTER_ROLE,
        },
        "subjects": [controller],
    }
