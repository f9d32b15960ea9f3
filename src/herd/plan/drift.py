"""Drift of a deployed release: which fields of its objects differ from its manifest. Pure.

- `effective` merges `spec.drift` and a chart's `drift` into `Policy` (defaults: Warn, 10m).
- `manifest_objects` parses a release's manifest (bounded YAML, `herd.plan.yamlsafe`) into
  the objects helm applied, each with its `ObjectRef`; `with_helm_metadata` adds what helm
  puts on each (its label and release annotations).
- `drifted_paths` compares one manifest object with the live object: only the fields the
  manifest sets count (a field the API server defaulted is not drift), scalars compare
  as Kubernetes does (`"80"` and `80`, `0.5` and `500m` are equal), lists of named items
  (containers, env, ports) by name; the result is JSON pointers minus the ignore rules.
- `applied_object` is what a correction applies: the manifest object, ignored fields
  taken from the live object so that applying it leaves them as they are.

Callers: `herd.clusters.drift` (the downstream reads and corrections), its tests.
"""

from __future__ import annotations

import base64
import copy
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from herd.api.common import duration_seconds
from herd.api.drift import DEFAULT_INTERVAL, DEFAULT_MODE, DriftIgnore, DriftSpec
from herd.names import HELM_MANAGED_BY, HELM_RELEASE_NAME, HELM_RELEASE_NAMESPACE
from herd.plan.yamlsafe import load_all

WARN, CORRECT, DISABLED = "Warn", "Correct", "Disabled"
# Metadata a manifest sets that is not the object's content.
_META_COMPARED = ("labels", "annotations")
_SUFFIX = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal(1000),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
    "Ki": Decimal(1024),
    "Mi": Decimal(1024**2),
    "Gi": Decimal(1024**3),
    "Ti": Decimal(1024**4),
    "Pi": Decimal(1024**5),
    "Ei": Decimal(1024**6),
}
_QUANTITY = re.compile(r"^([+-]?[0-9]+(?:\.[0-9]*)?|[+-]?\.[0-9]+)([eE][+-]?[0-9]+)?([a-zA-Z]*)$")


@dataclass(frozen=True)
class Policy:
    """A release's drift handling, both levels merged and defaults filled."""

    mode: str = DEFAULT_MODE
    interval: float = 600.0
    ignore: tuple[DriftIgnore, ...] = ()
    force: bool = False


def effective(stack: DriftSpec | None, chart: DriftSpec | None) -> Policy:
    """The chart's fields over the Stack's; ignore rules of both apply."""
    levels = [level for level in (stack, chart) if level is not None]
    mode, interval, force = DEFAULT_MODE, DEFAULT_INTERVAL, False
    ignore: list[DriftIgnore] = []
    for level in levels:
        mode = level.mode or mode
        interval = level.interval or interval
        force = level.force if level.force is not None else force
        ignore += level.ignore
    return Policy(mode, duration_seconds(interval), tuple(ignore), force)


@dataclass(frozen=True, order=True)
class ObjectRef:
    """One object of a release: `api_version` as written (group/version), its kind, where."""

    api_version: str
    kind: str
    namespace: str  # "" for a cluster-scoped kind
    name: str

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}"


# Kinds without a namespace that charts commonly ship (no discovery call to learn it).
CLUSTER_SCOPED = frozenset(
    {
        "Namespace",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "PersistentVolume",
        "StorageClass",
        "PriorityClass",
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
        "APIService",
        "IngressClass",
        "RuntimeClass",
        "CSIDriver",
        "ClusterIssuer",
    }
)


def manifest_objects(manifest: str, namespace: str) -> list[tuple[ObjectRef, dict[str, Any]]]:
    """The objects of a release manifest (hooks are not in it), each with where it lives:
    a namespaced object without a namespace is in the release's."""
    out = []
    for document in load_all(manifest):
        if not isinstance(document, dict) or not document.get("kind"):
            continue
        meta = document.get("metadata") or {}
        name = meta.get("name")
        if not isinstance(name, str):
            continue
        kind = str(document["kind"])
        where = "" if kind in CLUSTER_SCOPED else str(meta.get("namespace") or namespace)
        out.append((ObjectRef(str(document.get("apiVersion", "")), kind, where, name), document))
    return out


def with_helm_metadata(obj: dict[str, Any], release: str, namespace: str) -> dict[str, Any]:
    """`obj` (a manifest object) as helm applied it: helm adds its managed-by label and
    the release annotations to every object, not to the manifest it stores. A correction
    applied as helm's field manager without them would remove them (helm 4 owns them
    through server-side apply), and the object would leave the checks' lists."""
    meta = dict(obj.get("metadata") or {})
    meta["labels"] = {**(meta.get("labels") or {}), HELM_MANAGED_BY: "Helm"}
    annotations = {HELM_RELEASE_NAME: release, HELM_RELEASE_NAMESPACE: namespace}
    meta["annotations"] = {**(meta.get("annotations") or {}), **annotations}
    return {**obj, "metadata": meta}


def escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _unset(value: Any) -> bool:
    return value is None or value in ({}, [])


def _quantity(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    match = _QUANTITY.match(str(value).strip())
    if match is None or match.group(3) not in _SUFFIX:
        return None
    try:
        number = Decimal(match.group(1) + (match.group(2) or ""))
    except InvalidOperation:
        return None
    return number * _SUFFIX[match.group(3)]


def same_scalar(desired: Any, live: Any) -> bool:
    if desired == live:
        return True
    if isinstance(desired, (dict, list)) or isinstance(live, (dict, list)):
        return False
    if str(desired) == str(live):
        return True
    a, b = _quantity(desired), _quantity(live)
    return a is not None and a == b


def _named(items: list[Any]) -> bool:
    return bool(items) and all(isinstance(i, dict) and "name" in i for i in items)


def _diff(desired: Any, live: Any, path: str, out: list[str]) -> None:
    if _unset(desired):
        return
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            out.append(path)
            return
        for key, value in desired.items():
            sub = f"{path}/{escape(str(key))}"
            if key not in live:
                if not _unset(value):
                    out.append(sub)
                continue
            _diff(value, live[key], sub, out)
        return
    if isinstance(desired, list):
        _diff_list(desired, live, path, out)
        return
    if not same_scalar(desired, live):
        out.append(path)


def _diff_list(desired: list[Any], live: Any, path: str, out: list[str]) -> None:
    if not isinstance(live, list):
        out.append(path)
        return
    if _named(desired) and _named(live):
        by_name = {item["name"]: item for item in live}
        for index, item in enumerate(desired):
            found = by_name.get(item["name"])
            if found is None:
                out.append(f"{path}/{index}")
            else:
                _diff(item, found, f"{path}/{index}", out)
        return
    if all(isinstance(i, dict) for i in desired) and len(live) >= len(desired):
        for index, item in enumerate(desired):
            _diff(item, live[index], f"{path}/{index}", out)
        return
    if len(desired) != len(live) or not all(map(same_scalar, desired, live)):
        out.append(path)


def _content(obj: dict[str, Any]) -> dict[str, Any]:
    """What of an object is compared: labels, annotations and everything but status; a
    Secret's stringData as the data it becomes."""
    meta = obj.get("metadata") or {}
    out = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata", "status")}
    out["metadata"] = {k: meta[k] for k in _META_COMPARED if k in meta}
    if obj.get("kind") == "Secret" and isinstance(obj.get("stringData"), dict):
        data = dict(out.get("data") or {})
        for key, value in out.pop("stringData").items():
            data[key] = base64.b64encode(str(value).encode()).decode()
        out["data"] = data
    return out


def rule_applies(rule: DriftIgnore, ref: ObjectRef) -> bool:
    target = rule.target
    if target is None:
        return True
    wanted = (target.group, target.kind, target.name, target.namespace)
    have = (ref.group, ref.kind, ref.name, ref.namespace)
    return all(w is None or w == h for w, h in zip(wanted, have, strict=True))


def ignored_paths(ref: ObjectRef, rules: Iterable[DriftIgnore]) -> list[str]:
    return [p for rule in rules if rule_applies(rule, ref) for p in rule.paths]


def _covered(path: str, ignored: Sequence[str]) -> bool:
    return any(path == p or path.startswith(p + "/") for p in ignored)


def drifted_paths(
    ref: ObjectRef, desired: dict[str, Any], live: dict[str, Any], rules: Iterable[DriftIgnore] = ()
) -> list[str]:
    """JSON pointers of the fields the manifest sets that the live object does not have
    (or has otherwise), minus the ignore rules that apply to `ref`."""
    found: list[str] = []
    _diff(_content(desired), _content(live), "", found)
    ignored = ignored_paths(ref, rules)
    return [p for p in found if not _covered(p, ignored)]


def _tokens(pointer: str) -> list[str]:
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer.split("/")[1:]]


def _get(obj: Any, tokens: list[str]) -> tuple[bool, Any]:
    for token in tokens:
        if isinstance(obj, dict) and token in obj:
            obj = obj[token]
        elif isinstance(obj, list) and token.isdigit() and int(token) < len(obj):
            obj = obj[int(token)]
        else:
            return False, None
    return True, obj


def applied_object(
    desired: dict[str, Any], live: dict[str, Any] | None, ignored: Sequence[str]
) -> dict[str, Any]:
    """The manifest object to apply, with every ignored field as the live object has it
    (absent there: dropped), so a correction restores only what is not ignored."""
    out = copy.deepcopy(desired)
    for pointer in ignored:
        tokens = _tokens(pointer)
        if not tokens:
            continue
        present, parent = _get(out, tokens[:-1])
        if not present or not isinstance(parent, dict):
            continue
        there, value = _get(live, tokens) if live is not None else (False, None)
        if there:
            parent[tokens[-1]] = copy.deepcopy(value)
        else:
            parent.pop(tokens[-1], None)
    return out


@dataclass(frozen=True)
class ObjectDrift:
    """One object's drift: the paths, or missing; `problem` when it could not be read or
    corrected (e.g. an immutable field without force)."""

    ref: ObjectRef
    paths: tuple[str, ...] = ()
    missing: bool = False
    problem: str = ""

    def entries(self) -> list[str]:
        if self.missing:
            return [f"{self.ref}: missing"]
        return [f"{self.ref}: {p}" for p in self.paths]


@dataclass(frozen=True)
class ReleaseDrift:
    """A release's drift after a check: drifted objects (`objects`), and how many were
    corrected this check. `seen`/`corrected`: epoch seconds."""

    objects: tuple[ObjectDrift, ...] = ()
    corrected: int = 0
    seen: float | None = None
    corrected_at: float | None = None
    mode: str = WARN
    problems: tuple[str, ...] = field(default=())

    @property
    def count(self) -> int:
        return len(self.objects)

    def entries(self, limit: int = 5) -> list[str]:
        out: list[str] = []
        for item in self.objects:
            out += item.entries()
            if len(out) >= limit:
                break
        return out[:limit]
