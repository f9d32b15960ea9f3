"""Writes and removes a Stack's NeuVector admission rule on its clusters (`security:
{enforce: true}`; the object: `herd.plan.admission`).

Who writes it: Herd, with each cluster's own kubeconfig, for tenant Stacks too. The rule
is cluster scoped, which no tenant's namespaced RBAC may write, and a tenant cannot make
it say anything it could not do itself: its namespaces are the Stack's chart namespaces
(already checked against the tenant's `targetNamespaces`), its threshold one of two
words; Herd knows its rule by a digest of the Stack (no Stack can name another's rule),
and a deny rule only ever blocks more, in those namespaces. A tenant Stack needs a grant
with `addons: true` to set `security` at all (`herd.plan.tenancy`).

`put_rule` puts the Stack's rule into the cluster's one `local` object (creating it),
`drop_rule` takes it out (deleting the object when nothing else is left): read, change
(`herd.plan.admission`), write back under the read `resourceVersion`, again on a
conflict. Each answers "" or why it failed (fit for the status: an API error's summary,
never a body). Blocking: callers use a thread. Callers: `herd.engine.enforcement`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from herd.kube.client import API_ERRORS, api_error_summary
from herd.kube.shared import KubeconfigUnusable, kubeconfig_client
from herd.plan.admission import (
    GROUP,
    OBJECT_NAME,
    PLURAL,
    VERSION,
    is_empty,
    with_rule,
    without_rule,
)

_Change = Callable[[Any], dict[str, Any] | None]

_NOT_FOUND = 404
_CONFLICT = 409
_TIMEOUT = 20
_ATTEMPTS = 5  # other Stacks may write the same `local` object at once


def put_rule(kubeconfig: Path, rule: Mapping[str, Any]) -> str:
    """The Stack's `rule` into the cluster's `local` object (made when absent); "" or why."""
    return _update(kubeconfig, lambda current: with_rule(current, rule), "write")


def drop_rule(kubeconfig: Path, namespace: str, name: str) -> str:
    """The Stack's rule out of the cluster's `local` object (none there, or no such CRD:
    done); the object goes when nothing else is left in it. "" or why not."""
    return _update(kubeconfig, lambda current: without_rule(current, namespace, name), "remove")


def _update(kubeconfig: Path, change: _Change, doing: str) -> str:
    """Read `local`, `change` it, write it back under its resourceVersion; again on a
    conflict (another writer came between)."""
    try:
        with kubeconfig_client(kubeconfig) as api:
            objects = client.CustomObjectsApi(api)
            for _ in range(_ATTEMPTS):
                try:
                    _write(objects, change)
                    return ""
                except ApiException as error:
                    if error.status != _CONFLICT:
                        raise
    except KubeconfigUnusable as error:
        return str(error)
    except ApiException as error:
        if error.status == _NOT_FOUND and doing == "remove":
            return ""  # no such CRD, or the object went meanwhile: nothing of ours is left
        return f"cannot {doing} NeuVector admission rule: {api_error_summary(error)}"
    except API_ERRORS as error:
        return f"cannot {doing} NeuVector admission rule: {api_error_summary(error)}"
    return f"cannot {doing} NeuVector admission rule: {_ATTEMPTS} conflicting writes"


def _write(objects: client.CustomObjectsApi, change: _Change) -> None:
    where = (GROUP, VERSION, PLURAL)
    try:
        current: Any = objects.get_cluster_custom_object(
            *where, OBJECT_NAME, _request_timeout=_TIMEOUT
        )
    except ApiException as error:
        if error.status != _NOT_FOUND:
            raise
        current = None
    body = change(current)
    if body is None:
        return
    if current is None:
        objects.create_cluster_custom_object(*where, body, _request_timeout=_TIMEOUT)
    elif is_empty(body):
        version = body["metadata"].get("resourceVersion")
        preconditions = client.V1Preconditions(resource_version=version)
        objects.delete_cluster_custom_object(
            *where,
            OBJECT_NAME,
            body=client.V1DeleteOptions(preconditions=preconditions),
            _request_timeout=_TIMEOUT,
        )
    else:
        objects.replace_cluster_custom_object(*where, OBJECT_NAME, body, _request_timeout=_TIMEOUT)
