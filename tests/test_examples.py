"""Every example validates; broken variants fail with the right message and exit 2."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from herd.cli import main

EXAMPLES = Path(__file__).parent.parent / "examples"
OWNER_EXAMPLES = {
    "rag-inference-platform",
    "multi-model-serving",
    "ai-dev-environment",
    "secure-ai-stack",
    "observable-ai-stack",
    "production-ai-platform",
    "ollama-simple",
    "test-stack",
}


def example(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())
    return loaded


def test_every_owner_example_is_present_and_valid(capsys: pytest.CaptureFixture[str]) -> None:
    assert {p.stem for p in EXAMPLES.glob("*.yaml")} >= OWNER_EXAMPLES
    assert main(["validate", "-f", str(EXAMPLES)]) == 0
    out = capsys.readouterr().out
    assert "0 invalid" in out
    assert "wave 3: ollama" in out  # rag-inference-platform: gpu-operator -> qdrant -> ollama


def broken(tmp_path: Path, mutate: Any) -> Path:
    body = example("rag-inference-platform")
    mutate(body["spec"]["charts"])
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda charts: charts[0].update(dependsOn=["ollama"]),
            "spec.charts[0].dependsOn: dependency cycle gpu-operator -> ollama -> "
            "gpu-operator (each depends on the next)",
        ),
        (
            lambda charts: charts[1].update(dependsOn=["postgres"]),
            "spec.charts[1].dependsOn[0]: unknown chart 'postgres'",
        ),
        (
            lambda charts: charts[2].update(namespace="vector-db", releaseName="qdrant"),
            "spec.charts[2].releaseName: release vector-db/qdrant is also deployed by "
            "spec.charts[1]",
        ),
        (
            lambda charts: charts[0].update(timeout="15 minutes"),
            "spec.charts[0].timeout: must be a Go duration such as 90s, 5m or 1h30m, "
            "got '15 minutes'",
        ),
        (
            lambda charts: charts[0].update(repo="helm.ngc.nvidia.com/nvidia"),
            "spec.charts[0].repo: must be an https://, http:// or oci:// URL",
        ),
        (
            lambda charts: charts[1].update(
                values={"templated": True, "inline": {"host": "{{ .Cluster.labels.region"}}
            ),
            "spec.charts[1].values.inline.host: '{{' is not closed by '}}'",
        ),
        (
            lambda charts: charts[1].update(values={"clusters": [{"inline": {"a": 1}}]}),
            "spec.charts[1].values.clusters[0]: a clusters entry needs clusterIds or a selector",
        ),
    ],
)
def test_broken_variants_exit_2_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], mutate: Any, message: str
) -> None:
    assert main(["validate", "-f", str(broken(tmp_path, mutate))]) == 2
    out = capsys.readouterr().out
    assert "INVALID" in out and message in out, out


def test_multi_document_file_reports_each(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = example("ollama-simple")
    bad = example("ollama-simple")
    del bad["spec"]["charts"]
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump_all([good, bad]))
    assert main(["validate", "-f", str(path)]) == 2
    out = capsys.readouterr().out
    assert f"OK      {path}#1" in out
    assert f"INVALID {path}#2" in out and "spec.charts: is required" in out


def test_unreadable_yaml_is_invalid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("spec: [unclosed\n")
    assert main(["validate", "-f", str(path)]) == 2
    assert "cannot read" in capsys.readouterr().out
