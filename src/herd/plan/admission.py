"""`security: {enforce: true}`: the NeuVector admission-control rule of a Stack. Pure.

`admission_rule` builds the `NvAdmissionControlSecurityRule` (neuvector.com/v1, cluster
scoped, the schema of NeuVector's CRD chart `charts/crd/templates/crd.yaml`) that denies,
in the Stack's own chart namespaces, images with vulnerabilities at or above `failOn`:

- `failOn: High` (the default): `cveHighCount >= 1` (NeuVector counts as high every CVE
  of CVSS 7 or more, critical ones included);
- `failOn: Critical`: `cveScoreCount >= 9` with `count >= 1`: one CVE of CVSS 9 or more
  (NeuVector's own `cveCriticalCount` criterion is disabled in its controller).

`failOn` comes from `spec.security.failOn`; nothing else of the Stack is in the rule. The
object's name is Herd's (`rule_name`: a digest of the Stack's namespace and name), so a
Stack can neither pick nor overwrite another's rule. Who writes it and why:
`herd.addons.admission`. Callers: `herd.addons.admission`, `herd.engine`, tests.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from herd.names import OWNER_NAME_LABEL, OWNER_NAMESPACE_LABEL

GROUP = "neuvector.com"
VERSION = "v1"
PLURAL = "nvadmissioncontrolsecurityrules"
KIND = "NvAdmissionControlSecurityRule"
_LABEL_MAX = 63
_CRITICAL_SCORE = "9"  # CVSS v3: critical is 9.0 and above


def rule_name(namespace: str, name: str) -> str:
    """The rule object's name for the Stack `namespace/name` (DNS-safe, fixed length)."""
    digest = hashlib.sha256(f"{namespace}/{name}".encode()).hexdigest()[:16]
    return f"herd-stack-{digest}"


def admission_rule(
    namespace: str, name: str, namespaces: Iterable[str], fail_on: str
) -> dict[str, Any]:
    """The rule object for the Stack `namespace/name` over its chart `namespaces`."""
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
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {
            "name": rule_name(namespace, name),
            # For people reading the cluster; Herd finds its rule by name, never by label.
            "labels": {
                key: value
                for key, value in ((OWNER_NAMESPACE_LABEL, namespace), (OWNER_NAME_LABEL, name))
                if len(value) <= _LABEL_MAX
            },
        },
        "spec": {
            "rules": [
                {
                    "action": "deny",
                    "comment": (
                        f"Herd Stack {namespace}/{name}: deny images with {fail_on} or "
                        "higher vulnerabilities"
                    ),
                    "disabled": False,
                    "rule_mode": "protect",
                    "criteria": [
                        {"name": "namespace", "op": "containsAny", "value": where},
                        severity,
                    ],
                }
            ]
        },
    }
