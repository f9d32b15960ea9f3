"""The render check: which objects of a tenant's rendered manifest its grants do not allow.

Pure. `render_check` parses one release's manifest (templates, hooks, crds/) without
alias expansion and within `herd.plan.yamlsafe`'s bounds, and returns the release's
failure message naming the objects not granted (bounded, whatever the chart), or "".
Table-tested in `tests/test_tenancy.py`.

Callers: the rollout's tenant clusters (`herd.rollout.tenants`, in a worker process, off
the event loop).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from herd.plan import yamlsafe
from herd.plan.tenancy import Grants, cluster_scoped_allowed, namespace_allowed


@dataclass(frozen=True, order=True)
class ForbiddenObject:
    """One object of a rendered manifest that the grants do not allow."""

    kind: str
    name: str
    namespace: str | None  # None: cluster-scoped

    def __str__(self) -> str:
        if self.namespace is None:
            return f"{self.kind} {self.name} (cluster-scoped)"
        return f"{self.kind} {self.namespace}/{self.name} (namespace {self.namespace})"


def kind_key(api_version: str, kind: str) -> str:
    """`Kind.group` as discovery and CRDs name a kind; the core group is just `Kind`."""
    group = api_version.rpartition("/")[0]
    return f"{kind}.{group}" if group else kind


def forbidden_objects(
    grants: Grants,
    manifest: str,
    release_namespace: str,
    cluster_scoped: Collection[str],
) -> list[ForbiddenObject]:
    """The objects of a rendered manifest (templates, hooks, crds/) the grants do not allow.

    `cluster_scoped` holds the `kind_key`s the downstream cluster's discovery reports as
    cluster-scoped; kinds that the manifest's own CRDs define get the scope those CRDs give.
    A namespaced object with no namespace lands in `release_namespace`. A kind neither knows
    is taken as namespaced (helm cannot create it anyway; the downstream RBAC backs this up).
    Pass `grants.on_cluster(cluster)`. Sorted, without duplicates; [] when unrestricted.
    """
    if grants.unrestricted:
        return []
    objects = list(_objects(manifest))
    scoped = set(cluster_scoped) | _cluster_scoped_crd_kinds(objects)
    may_be_cluster_scoped = cluster_scoped_allowed(grants)
    found: set[ForbiddenObject] = set()
    for obj in objects:
        kind = str(obj.get("kind", ""))
        metadata = _mapping(obj.get("metadata"))
        name = str(metadata.get("name", ""))
        if kind_key(str(obj.get("apiVersion", "")), kind) in scoped:
            if not may_be_cluster_scoped:
                found.add(ForbiddenObject(kind, name, None))
            continue
        namespace = str(metadata.get("namespace") or release_namespace)
        if not namespace_allowed(grants, namespace):
            found.add(ForbiddenObject(kind, name, namespace))
    return sorted(found)


def render_check(
    grants: Grants, manifest: str, release_namespace: str, cluster_scoped: Collection[str]
) -> str:
    """The render check's verdict: the release's failure message, "" when allowed.

    A manifest that cannot be parsed within `herd.plan.yamlsafe`'s bounds (an alias bomb in
    crds/, too many objects) is refused with a bounded message. Run it off the event loop
    (`herd.rollout.tenants` runs it in a worker process).
    """
    try:
        found = forbidden_objects(grants, manifest, release_namespace, cluster_scoped)
    except yaml.YAMLError as error:
        return f"the rendered manifest cannot be checked: {_clip(' '.join(str(error).split()))}"
    return describe_forbidden(grants, found) if found else ""


LISTED_OBJECTS = 10  # a render-check message names at most this many objects
_NAME_CHARS = 120  # ... and at most this much of each name (tenant-chosen text)


def describe_forbidden(grants: Grants, objects: Sequence[ForbiddenObject]) -> str:
    """The release failure message for a failed render check: bounded, whatever the chart."""
    listed = ", ".join(_clip(str(obj)) for obj in objects[:LISTED_OBJECTS])
    if len(objects) > LISTED_OBJECTS:
        listed += f" and {len(objects) - LISTED_OBJECTS} more"
    return f"the chart would create objects not granted ({grants.describe()}): {listed}"


def _clip(text: str) -> str:
    return text if len(text) <= 2 * _NAME_CHARS else f"{text[:_NAME_CHARS]}…{text[-20:]}"


MAX_OBJECTS = 5_000  # objects in one release's manifest (List items counted one by one)


def _objects(manifest: str) -> Iterator[dict[str, Any]]:
    """The manifest's objects, parsed without alias expansion (`herd.plan.yamlsafe`) and at
    most `MAX_OBJECTS` of them: raises `yaml.YAMLError` (`YamlLimitError` past a bound)."""
    count = 0
    for doc in yamlsafe.load_all(manifest):
        if not isinstance(doc, dict):
            continue
        if str(doc.get("kind", "")).endswith("List") and isinstance(doc.get("items"), list):
            found = [item for item in doc["items"] if isinstance(item, dict)]
        else:
            found = [doc]
        count += len(found)
        if count > MAX_OBJECTS:
            raise yamlsafe.YamlLimitError(f"more than {MAX_OBJECTS} objects")
        yield from found


def _mapping(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _cluster_scoped_crd_kinds(objects: Iterable[dict[str, Any]]) -> set[str]:
    kinds: set[str] = set()
    for obj in objects:
        if obj.get("kind") != "CustomResourceDefinition":
            continue
        spec = _mapping(obj.get("spec"))
        names = _mapping(spec.get("names"))
        if spec.get("scope") == "Cluster" and names.get("kind") and spec.get("group"):
            kinds.add(f"{names['kind']}.{spec['group']}")
    return kinds
