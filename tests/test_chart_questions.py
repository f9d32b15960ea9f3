"""Rancher's install form (install/helm/herd/questions.yaml) matches the chart's values.

Rancher sets each answer at the question's `variable` path: a variable the chart does not
read would be silently ignored, and a default that differs from values.yaml would install
something else from the form than from `helm install`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

CHART = Path(__file__).resolve().parent.parent / "install" / "helm" / "herd"
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
QUESTIONS = yaml.safe_load((CHART / "questions.yaml").read_text())["questions"]
CHART_YAML = yaml.safe_load((CHART / "Chart.yaml").read_text())
# Rancher's question types (rancher/dashboard's form and apiserver's Question schema).
TYPES = {"string", "multiline", "boolean", "int", "enum", "password", "secret"}


def value_at(path: str) -> Any:
    node: Any = VALUES
    for key in path.split("."):
        assert isinstance(node, dict) and key in node, f"{path}: no such value in values.yaml"
        node = node[key]
    return node


@pytest.mark.parametrize("question", QUESTIONS, ids=[q["variable"] for q in QUESTIONS])
def test_each_question_sets_a_value_of_the_chart_with_its_default(question: dict[str, Any]) -> None:
    value = value_at(question["variable"])
    default = question.get("default")
    assert question["type"] in TYPES
    assert question.get("label") and question.get("group")
    if isinstance(value, list):  # the form answers with a comma-separated string
        assert default == ",".join(value)
    else:
        assert default == value, question["variable"]
    if question["type"] == "enum":
        assert default in question["options"]
    if question["type"] == "boolean":
        assert isinstance(value, bool)
    if question["type"] == "int":
        assert isinstance(value, int) and question.get("min", value) <= value


def test_the_form_asks_for_what_an_install_must_decide() -> None:
    asked = {q["variable"] for q in QUESTIONS}
    groups = {q["group"] for q in QUESTIONS}
    assert {"tenancy", "shard", "addonsConfigMap", "image.repository", "image.tag"} <= asked
    assert {"resources.requests.cpu", "resources.limits.memory"} <= asked
    assert {"Tenancy", "Add-ons", "Image", "Resources"} <= groups
    (tenancy,) = [q for q in QUESTIONS if q["variable"] == "tenancy"]
    assert set(tenancy["options"]) == {"grants", "open"}


def test_rancher_lists_the_chart_as_a_management_cluster_tool() -> None:
    annotations = CHART_YAML["annotations"]
    prefix = "catalog.cattle.io/"
    for key in ("display-name", "namespace", "rancher-version", "os", "permits-os"):
        assert annotations.get(prefix + key), key
    assert annotations[prefix + "os"] == "linux"
    assert annotations[prefix + "scope"] == "management"
    assert (CHART / "app-readme.md").read_text().startswith("# Herd\n")
