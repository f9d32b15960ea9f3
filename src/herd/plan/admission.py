"""`security: {enforce: true}`: a Stack's rule in NeuVector's admission control. Pure.

NeuVector reads admission rules from one `NvAdmissionControlSecurityRule` per cluster
(neuvector.com/v1, cluster scoped, the schema of NeuVector's CRD chart
`charts/crd/templates/crd.yaml`) named `local`: its CRD webhook refuses any other name
and its controller ignores them. So every enforcing Stack on a cluster keeps **one rule**
in that object, and the rules of others (other Stacks, the cluster admin's) are left
as they are:

- `with_rule(current, ...)`: the object with this Stack's rule put in (replacing its
  earlier one), created when `current` is None;
- `without_rule(current, ...)`: the object with this Stack's rule taken out; None when
  nothing of Herd's was in it (no write needed).

A Stack's rule is known by its comment, which starts with `rule_id` (a digest of the
Stack's namespace and name): only cluster admins and Herd may write the object, never a
tenant. The rule denies, in protect mode, in the Stack's own chart namespaces, images
with vulnerabilities at or above `failOn`:

- `failOn: High` (the default): `cveHighCount >= 1` (NeuVector counts as high every CVE
  of CVSS 7 or more, critical ones included);
- `failOn: Critical`: `cveScoreCount >= 9` with `count >= 1`: one CVE of CVSS 9 or more
  (NeuVector's own `cveCriticalCount` criterion is disabled in its controller).

`failOn` comes from `spec.security.failOn`; nothing else of the Stack is in the rule.
Who writes it and why: `herd.addons.admission`. Callers: `herd.addons.admission`,
`herd.engine.enforcement`, tests.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

GROUP = "neuvector.com"
VERSION = "v1"
PLURAL = "nvadmissioncontrolsecurityrules"
KIND = "NvAdmissionControlSecurityRule"
OBJECT_NAME = "local"  # the only name NeuVector accepts for this kind
_CRITICAL_SCORE = "9"  # CVSS v3: critical is 9.0 and above


def rule_id(namespace: str, name: str) -> str:
    """How the Stack `namespace/name`'s rule is known (its comment's first word)."""
    digest = hashlib.sha256(f"{namespace}/{name}".encode()).hexdigest()[:16]
    return f"herd-stack-{digest}"


def stack_rule(
    namespace: str, name: str, namespaces: Iterable[str], fail_on: str
) -> dict[str, Any]:
    """The Stack `namespace/name`'s deny rule over its chart `namespaces`."""
    where = ",".join(sorted(set(namespaces)))
    if fail_on == "Critical":
        severity: dict[str, Any] = {
            "name": "cveScoreCount",
            "op": ">=",
            "value": _CRITICAL_SCORE,
            "sub_criteria": [{"name": "count", "op": ">=", "value": "1"}],
        }
    else:
        severity = {"name": "cveHighCount", "op": ">=", "value": "1"}
    return {
        "action": "deny",
        "comment": (
            f"{rule_id(namespace, name)}: Herd Stack {namespace}/{name} denies images with "
            f"{fail_on} or higher vulnerabilities"
        ),
        "disabled": False,
        "rule_mode": "protect",
        "criteria": [{"name": "namespace", "op": "containsAny", "value": where}, severity],
    }


def with_rule(current: Mapping[str, Any] | None, rule: Mapping[str, Any]) -> dict[str, Any]:
    """`current` (None: a new `local` object) with `rule` in place of the Stack's own."""
    found = _copy(current)
    marker = str(rule["comment"]).split(":", 1)[0]
    rules = [r for r in _rules(found) if not _is(r, marker)]
    found.setdefault("spec", {})["rules"] = [*rules, dict(rule)]
    return found


def without_rule(
    current: Mapping[str, Any] | None, namespace: str, name: str
) -> dict[str, Any] | None:
    """`current` without the Stack's rule; None when it had none (nothing to write)."""
    if current is None:
        return None
    marker = rule_id(namespace, name)
    rules = _rules(current)
    kept = [r for r in rules if not _is(r, marker)]
    if len(kept) == len(rules):
        return None
    found = _copy(current)
    found["spec"]["rules"] = kept
    return found


def is_empty(body: Mapping[str, Any]) -> bool:
    """An object with neither rules nor NeuVector settings: nothing is lost deleting it."""
    spec = body.get("spec") or {}
    return not spec.get("rules") and not spec.get("config")


def _copy(current: Mapping[str, Any] | None) -> dict[str, Any]:
    if current is None:
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KIND,
            "metadata": {"name": OBJECT_NAME},
            "spec": {"rules": []},
        }
    found = copy.deepcopy(dict(current))
    meta = found.get("metadata") or {}
    found["metadata"] = {
        key: meta[key]
        for key in ("name", "resourceVersion", "labels", "annotations")
        if key in meta
    }
    found["spec"] = dict(found.get("spec") or {})
    return found


def _rules(body: Mapping[str, Any]) -> list[Any]:
    rules = (body.get("spec") or {}).get("rules")
    return list(rules) if isinstance(rules, list) else []


def _is(rule: Any, marker: str) -> bool:
    return isinstance(rule, dict) and str(rule.get("comment") or "").split(":", 1)[0] == marker
