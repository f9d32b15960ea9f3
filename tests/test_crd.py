"""The committed CRD is exactly what the models generate, and it is structural."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from herd.api.crd import crd, render

CRD_FILE = Path(__file__).parent.parent / "crds" / "herd.suse.com_stacks.yaml"


def walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        found.append((path, node))
        for key, child in node.get("properties", {}).items():
            found += walk(child, f"{path}.{key}")
        if isinstance(node.get("items"), dict):
            found += walk(node["items"], f"{path}[]")
        if isinstance(node.get("additionalProperties"), dict):
            found += walk(node["additionalProperties"], f"{path}{{}}")
    return found


def test_committed_crd_matches_the_models() -> None:
    assert CRD_FILE.read_text() == render(), "run `make crds` and commit the result"


def test_printer_columns_match_the_readme() -> None:
    version = crd()["spec"]["versions"][0]
    columns = [(c["name"], c["jsonPath"]) for c in version["additionalPrinterColumns"]]
    assert columns == [
        ("Phase", ".status.phase"),
        ("Clusters", ".status.clusterCount"),
        ("Charts", ".status.chartCount"),
        ("Stage", ".status.rollout.stage"),
        ("Drifted", ".status.driftedObjects"),
        ("Age", ".metadata.creationTimestamp"),
    ]
    assert version["subresources"] == {"status": {}}


def test_schema_is_structural() -> None:
    schema = yaml.safe_load(CRD_FILE.read_text())["spec"]["versions"][0]["schema"]
    for path, node in walk(schema["openAPIV3Schema"]):
        assert "$ref" not in node and "anyOf" not in node, path
        assert (
            "type" in node
            or node.get("x-kubernetes-preserve-unknown-fields")
            or node.get("x-kubernetes-int-or-string")
        ), path
        assert not ("properties" in node and "additionalProperties" in node), path


def test_only_free_form_values_preserve_unknown_fields() -> None:
    schema = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    free = sorted(p for p, n in walk(schema) if n.get("x-kubernetes-preserve-unknown-fields"))
    assert free == [
        ".spec.charts[].values.clusters[].inline",
        ".spec.charts[].values.envs{}",
        ".spec.charts[].values.inline",
        ".spec.observability",
        ".spec.security",
    ]


def test_every_spec_field_has_a_description() -> None:
    schema = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in walk(schema["properties"]["spec"], ".spec"):
        if path.endswith(("{}", "[]")) or path == ".spec.charts[].dependsOn[]":
            continue
        assert node.get("description"), path


def test_the_helm_chart_ships_the_same_crd() -> None:
    chart_crd = CRD_FILE.parent.parent / "install" / "helm" / "herd" / "crds" / CRD_FILE.name
    assert chart_crd.read_text() == CRD_FILE.read_text(), "run `make crds`"
