"""The ClusterGrant CRD: the committed file is what the models generate, and it reads well."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from herd.api.crd import grant_crd, main, render
from herd.api.grants import parse_grant
from herd.errors import SpecError
from tests.test_crd import walk

ROOT = Path(__file__).parent.parent
CRD_FILE = ROOT / "crds" / "herd.suse.com_clustergrants.yaml"


def test_committed_crd_matches_the_models() -> None:
    assert CRD_FILE.read_text() == render("clustergrants"), "run `make crds` and commit the result"


def test_the_helm_chart_ships_the_same_crd() -> None:
    chart_crd = ROOT / "install" / "helm" / "herd" / "crds" / CRD_FILE.name
    assert chart_crd.read_text() == CRD_FILE.read_text(), "run `make crds`"


def test_cluster_scoped_with_printer_columns() -> None:
    spec = grant_crd()["spec"]
    assert spec["scope"] == "Cluster"
    assert spec["names"]["kind"] == "ClusterGrant"
    columns = [(c["name"], c["jsonPath"]) for c in spec["versions"][0]["additionalPrinterColumns"]]
    assert columns == [
        ("Namespaces", ".spec.namespaces"),
        ("Clusters", ".spec.clusters"),
        ("Age", ".metadata.creationTimestamp"),
    ]


def test_schema_is_structural_and_closed() -> None:
    schema = yaml.safe_load(CRD_FILE.read_text())["spec"]["versions"][0]["schema"]
    for path, node in walk(schema["openAPIV3Schema"]):
        assert "$ref" not in node and "anyOf" not in node, path
        assert "type" in node, path
        assert not node.get("x-kubernetes-preserve-unknown-fields"), path


def test_every_spec_field_has_a_description() -> None:
    schema = grant_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in walk(schema["properties"]["spec"], ".spec"):
        if path.endswith(("{}", "[]")):
            continue
        assert node.get("description"), path


def test_stacks_stay_the_default_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    assert capsys.readouterr().out == render("stacks")
    assert main(["clustergrants"]) == 0
    assert capsys.readouterr().out == render("clustergrants")
    assert main(["nope"]) == 2


GRANT = {
    "apiVersion": "herd.suse.com/v1",
    "kind": "ClusterGrant",
    "metadata": {"name": "team-a"},
    "spec": {
        "namespaces": ["team-a"],
        "clusters": {"selector": {"matchLabels": {"env": "staging"}}},
        "targetNamespaces": ["team-a", "team-a-*"],
    },
}


def test_a_grant_parses_with_safe_defaults() -> None:
    grant = parse_grant(GRANT)
    assert grant.name == "team-a"
    assert grant.spec.cluster_scoped_resources is False
    assert grant.spec.addons is False
    assert grant.spec.target_namespaces == ["team-a", "team-a-*"]


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"clusters": {}}, "spec.clusters"),
        ({"namespaces": []}, "spec.namespaces"),
        ({"namespaces": ["Team_A"]}, "spec.namespaces[0]"),
        ({"targetNamespaces": ["team a"]}, "spec.targetNamespaces[0]"),
        ({"clusterScopedResources": "maybe"}, "spec.clusterScopedResources"),
        ({"extra": 1}, "spec.extra"),
    ],
)
def test_bad_grants_name_the_field(spec: dict[str, object], field: str) -> None:
    body = {**GRANT, "spec": {**GRANT["spec"], **spec}}  # type: ignore[dict-item]
    with pytest.raises(SpecError) as raised:
        parse_grant(body)
    assert field in [p.field for p in raised.value.problems], raised.value
