"""Where the controller keeps its impersonation RoleBindings (`herd.plan.impersonation`)."""

from __future__ import annotations

import pytest

from herd.names import MANAGED_LABEL
from herd.plan.impersonation import (
    CLUSTER_ROLE,
    changes,
    protected,
    role_binding,
    subject,
    wanted_namespaces,
)

OWN = {"herd-system", "fleet-default"}


@pytest.mark.parametrize(
    ("namespace", "never"),
    [
        ("team-a", False),
        ("default", False),
        ("kube-system", True),
        ("kube-public", True),
        ("cattle-system", True),
        ("cattle-fleet-system", True),
        ("fleet-default", True),
        ("fleet-local", True),
        ("herd-system", True),
        ("kubernetes-team", False),  # only the kube- prefix is the system's
    ],
)
def test_protected_namespaces(namespace: str, never: bool) -> None:
    assert protected(namespace, OWN) is never


def test_wanted_are_the_granted_unprotected_namespaces() -> None:
    granted = ["team-a", "team-b", "kube-system", "herd-system", "team-a", ""]
    assert wanted_namespaces(granted, OWN) == {"team-a", "team-b"}


@pytest.mark.parametrize(
    ("wanted", "existing", "create", "delete"),
    [
        ({"a", "b"}, set(), ("a", "b"), ()),
        ({"a"}, {"a", "b"}, (), ("b",)),
        (set(), {"kube-system"}, (), ("kube-system",)),  # one made by hand goes too
        ({"a"}, {"a"}, (), ()),
    ],
)
def test_changes(
    wanted: set[str], existing: set[str], create: tuple[str, ...], delete: tuple[str, ...]
) -> None:
    found = changes(wanted, existing)
    assert (found.create, found.delete) == (create, delete)


def test_subject_and_binding() -> None:
    controller = subject("system:serviceaccount:herd-system:herd-controller")
    assert controller == {"kind": "ServiceAccount", "name": "herd-controller",
                          "namespace": "herd-system"}  # fmt: skip
    assert subject("admin")["kind"] == "User"
    body = role_binding("team-a", controller)
    assert body["metadata"]["namespace"] == "team-a"
    assert body["metadata"]["labels"][MANAGED_LABEL] == "true"
    assert body["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                               "name": CLUSTER_ROLE}  # fmt: skip
    assert body["subjects"] == [controller]
