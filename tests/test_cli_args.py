"""`herd apply/plan/delete/status` arguments: what parses, and invalid input → exit 2
before the engine (or helm) is ever built."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import yaml

from herd.api import parse_stack
from herd.cli import fleet, main
from herd.cli.fleet import NoValuesCluster, limits_of
from herd.errors import SpecError
from herd.rollout.gates import DEFAULT_LIMITS, Limits
from tests.conftest import chart, stack_body


@pytest.fixture(autouse=True)
def no_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests must stop at input checking; building the engine fails them."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the engine was built for invalid input")

    monkeypatch.setattr(fleet, "Session", refuse)


def write(path: Path, *documents: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump_all(documents))
    return path


@pytest.fixture
def kubeconfig(tmp_path: Path) -> Path:
    path = tmp_path / "prod.yaml"
    path.write_text("apiVersion: v1\nkind: Config\n")
    return path


@pytest.fixture
def stack(tmp_path: Path) -> Path:
    return write(tmp_path / "stack.yaml", stack_body())


def run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("command", ["apply", "plan", "delete"])
def test_stack_file_is_required(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main([command, "--kubeconfig", "k.yaml"])

    assert stop.value.code == 2
    assert "-f/--filename" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--output", "yaml"], "invalid choice: 'yaml'"),
        (["--concurrency", "0"], "must be at least 1"),
        (["--concurrency", "many"], "invalid _positive value"),
    ],
)
def test_bad_option_values_exit_2(
    argv: list[str], message: str, stack: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["apply", "-f", str(stack), "--kubeconfig", "k.yaml", *argv])

    assert stop.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("command", ["apply", "plan", "delete", "status"])
def test_no_cluster_is_invalid(
    command: str, stack: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, command, "-f", stack)

    assert code == 2 and out == ""
    assert f"herd {command}: no cluster given" in err


def test_cluster_option_errors_are_invalid(
    stack: Path, kubeconfig: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    label = run(capsys, "apply", "-f", stack, "--kubeconfig", f"{kubeconfig}=p", "--label", "q:a=b")
    missing = run(capsys, "plan", "-f", stack, "--kubeconfig", tmp_path / "nope.yaml")
    context = run(capsys, "apply", "-f", stack, "--context", "ctx")

    assert label[0] == 2 and "no cluster 'q' (known: p)" in label[2]
    assert missing[0] == 2 and f"kubeconfig file {tmp_path / 'nope.yaml'} not found" in missing[2]
    assert context[0] == 2 and "give --kubeconfig FILE before --context" in context[2]


def test_invalid_stack_lists_every_problem(
    tmp_path: Path, kubeconfig: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = stack_body(chart("a", timeout="soon", repo="charts.example.com"))
    path = write(tmp_path / "bad.yaml", body)

    code, out, err = run(capsys, "apply", "-f", path, "--kubeconfig", kubeconfig, "-o", "json")

    assert code == 2 and out == ""  # nothing a JSON reader could mistake for a result
    assert f"herd apply: {path} is invalid:" in err
    assert "spec.charts[0].timeout: must be a Go duration" in err
    assert "spec.charts[0].repo: must be an https://, http:// or oci:// URL" in err


@pytest.mark.parametrize(
    ("documents", "message"),
    [
        ((), "no Stack document found"),
        ((stack_body(), stack_body()), "2 documents; give one Stack per run"),
        (({**stack_body(), "metadata": {"namespace": "ci"}},), "metadata.name is required"),
    ],
)
def test_one_named_stack_per_file(
    documents: tuple[dict[str, Any], ...],
    message: str,
    tmp_path: Path,
    kubeconfig: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = write(tmp_path / "stack.yaml", *documents)

    code, _, err = run(capsys, "plan", "-f", path, "--kubeconfig", kubeconfig)

    assert code == 2 and message in err


def test_status_stack_file_is_optional_but_checked(
    tmp_path: Path, kubeconfig: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "bad.yaml", {"kind": "Stack"})

    code, _, err = run(capsys, "status", "-f", path, "--kubeconfig", kubeconfig)

    assert code == 2 and "is invalid" in err


def test_concurrency_bounds_clusters_and_helm_processes() -> None:
    assert limits_of(None) == DEFAULT_LIMITS
    assert limits_of(3) == Limits(clusters=3, helm=3)


async def test_values_from_without_a_cluster_to_read_them_is_a_spec_error() -> None:
    source = {"kind": "Secret", "name": "db-values"}
    optional = {"kind": "ConfigMap", "name": "extra", "optional": True}
    stack = parse_stack(stack_body(chart("a", values={"from": [optional, source]})))

    with pytest.raises(SpecError) as error:
        await NoValuesCluster().read("ci", stack.spec)

    assert [str(p) for p in error.value.problems] == [
        "spec.charts[0].values.from[1]: Secret ci/db-values cannot be read: give the cluster "
        "holding it with --values-kubeconfig FILE"
    ]
    assert await NoValuesCluster().read("ci", parse_stack(stack_body()).spec) == {}


def test_version_names_the_installed_package(capsys: pytest.CaptureFixture[str]) -> None:
    # The image's smoke check (Dockerfile, e2e/test_image.py) runs `herd --version`.
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"herd {metadata.version('herd')}"
