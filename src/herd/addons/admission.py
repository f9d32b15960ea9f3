"""Writes and removes a Stack's NeuVector admission rule on its clusters (`security:
{enforce: true}`; the object: `herd.plan.admission`).

Who writes it: Herd, with each cluster's own kubeconfig, for tenant Stacks too. The rule
is cluster scoped, which no tenant's namespaced RBAC may write, and a tenant cannot make
it say anything it could not do itself: its namespaces are the Stack's chart namespaces
(already checked against the tenant's `targetNamespaces`), its threshold one of two
words, its name Herd's own digest of the Stack, and a deny rule only ever blocks more,
in those namespaces. A tenant Stack needs a grant with `addons: true` to set `security`
at all (`herd.plan.tenancy`).

`put_rule` creates or replaces the object, `drop_rule` deletes it (absent is fine). Each
answers "" or why it failed (fit for the status: an API error's summary, never a body).
Blocking: callers use a thread. Callers: `herd.engine.enforcement`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from herd.kube.client import (
    API_ERRORS,
    KubeconfigUnusable,
    api_error_summary,
    kubeconfig_client,
)
from herd.plan.admission import GROUP, PLURAL, VERSION

_NOT_FOUND = 404
_CONFLICT = 409
_TIMEOUT = 20


def put_rule(kubeconfig: Path, body: dict[str, Any]) -> str:
    """Create or replace the rule `body` on the cluster; "" or why not."""
    name = body["metadata"]["name"]
    try:
        with kubeconfig_client(kubeconfig) as api:
            objects = client.CustomObjectsApi(api)
            try:
                objects.create_cluster_custom_object(
                    GROUP, VERSION, PLURAL, body, _request_timeout=_TIMEOUT
                )
            except ApiException as error:
                if error.status != _CONFLICT:
                    raise
                current: Any = objects.get_cluster_custom_object(
                    GROUP, VERSION, PLURAL, name, _request_timeout=_TIMEOUT
                )
                version = (current.get("metadata") or {}).get("resourceVersion")
                replaced = {**body, "metadata": {**body["metadata"], "resourceVersion": version}}
                objects.replace_cluster_custom_object(
                    GROUP, VERSION, PLURAL, name, replaced, _request_timeout=_TIMEOUT
                )
    except KubeconfigUnusable as error:
        return str(error)
    except API_ERRORS as error:
        return f"cannot write NeuVector admission rule {name}: {api_error_summary(error)}"
    return ""


def drop_rule(kubeconfig: Path, name: str) -> str:
    """Delete the rule `name` from the cluster (absent, or no such CRD: done); "" or why."""
    try:
        with kubeconfig_client(kubeconfig) as api:
            objects = client.CustomObjectsApi(api)
            objects.delete_cluster_custom_object(
                GROUP, VERSION, PLURAL, name, _request_timeout=_TIMEOUT
            )
    except KubeconfigUnusable as error:
        return str(error)
    except ApiException as error:
        if error.status == _NOT_FOUND:
            return ""
        return f"cannot delete NeuVector admission rule {name}: {api_error_summary(error)}"
    except API_ERRORS as error:
        return f"cannot delete NeuVector admission rule {name}: {api_error_summary(error)}"
    return ""
