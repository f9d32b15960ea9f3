"""API paths of a release's objects, without a discovery call. Pure.

A kind's resource name is its lower-cased plural (English rules plus the irregular kinds
charts ship); cluster-scoped kinds are `herd.plan.drift.CLUSTER_SCOPED`.

Callers: `herd.clusters.drift_api`.
"""

from __future__ import annotations

from herd.plan.drift import ObjectRef

_IRREGULAR = {"Endpoints": "endpoints", "PodSecurityPolicy": "podsecuritypolicies"}


def plural(kind: str) -> str:
    if kind in _IRREGULAR:
        return _IRREGULAR[kind]
    lower = kind.lower()
    if lower.endswith("y") and lower[-2:-1] not in "aeiou":
        return lower[:-1] + "ies"
    if lower.endswith(("s", "x", "z", "ch", "sh")):
        return lower + "es"
    return lower + "s"


def collection_path(api_version: str, kind: str, namespace: str) -> str:
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    where = f"/namespaces/{namespace}" if namespace else ""
    return f"{base}{where}/{plural(kind)}"


def object_path(ref: ObjectRef) -> str:
    return f"{collection_path(ref.api_version, ref.kind, ref.namespace)}/{ref.name}"
