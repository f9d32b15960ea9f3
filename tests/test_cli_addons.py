"""`--addons FILE`: the operator's add-on configuration as a file, parsed the same way."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from herd.api import parse_stack
from herd.cli import addons, fleet, main
from herd.errors import SpecError
from herd.plan.desired import plan_stack
from herd.plan.releases import ReleaseKey
from herd.plan.results import ReleaseResult, State
from herd.status.facts import AGENT, NEUVECTOR
from tests.conftest import chart, stack_body

SAMPLE = Path(__file__).parent.parent / "examples" / "addons-config.yaml.sample"
API_KEY = "sts-" + uuid.uuid4().hex


def configmap(**data: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "herd-addons", "namespace": "herd-system"},
        "data": data,
    }


def secret(name: str = "herd-addons", **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, **meta},
        "stringData": {"stackstate.url": "https://sts.example.com", "stackstate.apiKey": API_KEY},
    }


def write(path: Path, *documents: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump_all(documents))
    return path


def test_the_sample_file_plans_both_addon_charts_as_the_operator_does() -> None:
    catalog = addons.load(SAMPLE)
    spec = parse_stack(stack_body(chart("app"), security="enabled", observability="enabled")).spec

    plan = plan_stack(spec, addons=catalog.charts(spec))

    assert plan.waves == ((NEUVECTOR, AGENT), ("app",))
    assert catalog.config is not None
    assert catalog.config.neuvector.repo == "https://neuvector.github.io/neuvector-helm/"


@pytest.mark.parametrize(
    ("documents", "message"),
    [
        ((secret(),), "has no ConfigMap document"),
        ((configmap(**{"neuvector.wat": "1"}),), "key neuvector.wat: unknown key"),
        ((configmap(**{"neuvector.wait": "maybe"}),), "key neuvector.wait: must be true or false"),
        ((configmap(), secret("other")), "names the Secret 'herd-addons' (key secretName)"),
        ((configmap(), secret(namespace="elsewhere")), "must be in the ConfigMap's namespace"),
        ((configmap(), configmap()), "give one ConfigMap and at most one Secret document"),
    ],
)
def test_a_bad_file_is_refused_naming_the_key(
    tmp_path: Path, documents: tuple[dict[str, Any], ...], message: str
) -> None:
    path = write(tmp_path / "addons.yaml", *documents)

    with pytest.raises(addons.AddonFileError) as error:
        addons.load(path)

    assert message in "\n".join(error.value.lines)
    assert API_KEY not in str(error.value)


def test_a_yaml_error_names_the_line_never_the_text_around_it(tmp_path: Path) -> None:
    path = tmp_path / "addons.yaml"
    path.write_text(f"kind: Secret\nstringData:\n  stackstate.apiKey: {API_KEY}\n  : [\n")

    with pytest.raises(addons.AddonFileError) as error:
        addons.load(path)

    assert "is not valid YAML (line" in str(error.value)
    assert API_KEY not in str(error.value)


def test_a_secret_value_that_is_not_a_string_is_named(tmp_path: Path) -> None:
    body = secret()
    body["stringData"]["neuvector.password"] = 12345
    path = write(tmp_path / "addons.yaml", configmap(), body)

    with pytest.raises(addons.AddonFileError, match=r"key neuvector.password: must be a string"):
        addons.load(path)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(addons.AddonFileError, match=r"nope\.yaml: file not found"):
        addons.load(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("toggles", "fields"),
    [
        ({"security": "enabled"}, ["spec.security"]),
        ({"observability": "enabled"}, ["spec.observability"]),
        (
            {"security": "enabled", "observability": "enabled"},
            ["spec.security", "spec.observability"],
        ),
    ],
)
def test_without_the_file_an_enabled_addon_is_a_spec_error_naming_it_and_the_flag(
    toggles: dict[str, str], fields: list[str]
) -> None:
    spec = parse_stack(stack_body(**toggles)).spec

    with pytest.raises(SpecError) as error:
        addons.NoAddons().charts(spec)

    assert [p.field for p in error.value.problems] == fields
    for problem in error.value.problems:
        assert "--addons FILE" in problem.message
        assert f"{problem.field.removeprefix('spec.')}: enabled deploys" in problem.message
    assert "NeuVector" in str(error.value) or "SUSE Observability" in str(error.value)


def test_without_the_file_a_stack_without_addons_plans_as_before() -> None:
    spec = parse_stack(stack_body()).spec

    assert addons.NoAddons().charts(spec) == []


def test_the_redactor_hides_every_secret_value_in_messages(tmp_path: Path) -> None:
    catalog = addons.load(write(tmp_path / "addons.yaml", configmap(), secret()))
    redact = addons.Redactor.of(catalog)
    key = ReleaseKey("c1", "suse-observability", "suse-observability-agent")
    failed = ReleaseResult(key, AGENT, State.FAILED, message=f"bad apiKey {API_KEY}!")

    assert redact.result(failed).message == "bad apiKey [redacted]!"
    assert redact.text(f"x{API_KEY}x") == "x[redacted]x"
    assert addons.Redactor.of(None).text(API_KEY) == API_KEY


def test_an_unusable_addons_file_exits_2_before_the_engine_is_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the engine was built for invalid input")

    monkeypatch.setattr(fleet, "Session", refuse)
    stack = write(tmp_path / "stack.yaml", stack_body(security="enabled"))
    kubeconfig = tmp_path / "k.yaml"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    bad = write(tmp_path / "addons.yaml", configmap(**{"neuvector.failOn": "low"}), secret())

    for command in ("apply", "plan", "delete"):
        code = main(
            [command, "-f", str(stack), "--kubeconfig", str(kubeconfig), "--addons", str(bad)]
        )
        out, err = capsys.readouterr()

        assert code == 2 and out == ""
        assert f"herd {command}: --addons {bad}: not a usable add-on configuration:" in err
        assert "key neuvector.failOn: must be critical or high" in err
        assert API_KEY not in err
