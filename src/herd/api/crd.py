"""Generate the Stack CustomResourceDefinition from the pydantic models.

The models in `herd.api.v1` are the source; `crds/herd.suse.com_stacks.yaml` is their
output, regenerated with `python -m herd.api.crd > crds/herd.suse.com_stacks.yaml`
(`make crds`). A unit test fails when the committed file drifts from the models.

Pydantic emits JSON Schema; Kubernetes wants a *structural* OpenAPI v3 schema. The
conversion inlines `$ref`s, folds `Optional` (`anyOf [X, null]`) into X, drops titles,
and turns free-form objects into `x-kubernetes-preserve-unknown-fields`.
"""

from __future__ import annotations

import sys
from typing import Any

import yaml

from herd.api.v1 import (
    GROUP,
    KIND,
    PLURAL,
    SHORT_NAMES,
    SINGULAR,
    VERSION,
    StackSpec,
    StackStatus,
)

Schema = dict[str, Any]

_DROPPED_KEYS = {"title", "$defs"}


def _resolve(node: Schema, defs: dict[str, Schema]) -> Schema:
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _resolve(merged, defs)
    options = node.get("anyOf")
    if options is not None:
        concrete = [o for o in options if o.get("type") != "null"]
        if len(concrete) == 1:
            rest = {k: v for k, v in node.items() if k != "anyOf"}
            return _resolve({**concrete[0], **rest}, defs)
    return node


def structural(node: Schema, defs: dict[str, Schema]) -> Schema:
    """One JSON Schema node as a structural OpenAPI v3 node."""
    node = _resolve(node, defs)
    out: Schema = {}
    for key, value in node.items():
        if key in _DROPPED_KEYS or (key == "default" and value is None):
            continue
        if key == "properties":
            out[key] = {name: structural(child, defs) for name, child in value.items()}
        elif key == "items":
            out[key] = structural(value, defs)
        elif key == "additionalProperties":
            if isinstance(value, dict) and value.get("type") != "object":
                out[key] = structural(value, defs)
            elif isinstance(value, dict):
                out[key] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
            # `true` means free-form, `false` is implied by `properties` (pruning).
            elif value is True:
                out["x-kubernetes-preserve-unknown-fields"] = True
        else:
            out[key] = value
    if "type" not in out and "x-kubernetes-preserve-unknown-fields" not in out:
        out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def _schema_of(model: type[StackSpec] | type[StackStatus], description: str) -> Schema:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    return {**structural(raw, defs), "description": description}


def crd() -> Schema:
    """The CustomResourceDefinition for `stacks.herd.suse.com`, as a dict."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": list(SHORT_NAMES),
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                        {
                            "name": "Clusters",
                            "type": "integer",
                            "jsonPath": ".status.clusterCount",
                        },
                        {"name": "Charts", "type": "integer", "jsonPath": ".status.chartCount"},
                        {
                            "name": "Age",
                            "type": "date",
                            "jsonPath": ".metadata.creationTimestamp",
                        },
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": (
                                "A Stack deploys a set of Helm charts, ordered by their "
                                "dependencies, into every cluster it targets."
                            ),
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": _schema_of(StackSpec, "What to deploy and where."),
                                "status": _schema_of(
                                    StackStatus,
                                    "What is deployed where, written by the Herd controller.",
                                ),
                            },
                        }
                    },
                }
            ],
        },
    }


def render() -> str:
    """The CRD as the YAML committed in `crds/`."""
    header = "# Generated from src/herd/api/v1.py by `make crds`. Do not edit.\n"
    return header + yaml.safe_dump(crd(), sort_keys=False, allow_unicode=True, width=100)


if __name__ == "__main__":
    sys.stdout.write(render())
