"""Hostile bytes cost bounded time and memory: YAML, templating, chart archives, messages.

The attacks are the real ones of the tenancy issue (an alias bomb, a long run of `{{`, a
subchart archive that decompresses to 150 MB), built by `e2e.testbed.hostile_charts`.
Bounds are asserted on what the code does (refusals, counts), not on wall-clock time.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
import yaml

from e2e.testbed import hostile_charts
from herd.errors import SpecError
from herd.helm.chart_crds import ChartCrdError, chart_crds, crd_files
from herd.helm.failures import MESSAGE_LIMIT, FailureKind, HelmFailure, classify
from herd.helm.helmignore import Rules
from herd.plan import templating, yamlsafe
from herd.plan import values as clustervalues
from herd.plan.render_check import (
    LISTED_OBJECTS,
    MAX_OBJECTS,
    ForbiddenObject,
    describe_forbidden,
    render_check,
)
from herd.plan.tenancy import Grants

# -- YAML ------------------------------------------------------------------------------------


def test_an_alias_bomb_is_refused_before_it_expands() -> None:
    bomb = hostile_charts.alias_bomb(9)  # 10**9 strings once expanded
    assert len(bomb) < 700
    with pytest.raises(yamlsafe.YamlLimitError, match="nodes once aliases are expanded"):
        list(yamlsafe.load_all(bomb))


def test_plain_pyyaml_would_build_the_bomb_as_shared_references() -> None:
    """Why the bound counts expanded nodes: safe_load itself is quick, walking it is not."""
    loaded = yaml.safe_load(hostile_charts.alias_bomb(3))
    assert loaded["l3"][0] is loaded["l3"][1]  # one object, referenced ten times
    assert len(str(loaded["l3"])) > 10 * len(str(loaded["l2"]))


def test_small_anchors_and_aliases_still_work() -> None:
    text = "base: &b {cpu: 1}\nweb: *b\nworker: {<<: *b, cpu: 2}\n"
    assert yamlsafe.load(text) == {"base": {"cpu": 1}, "web": {"cpu": 1}, "worker": {"cpu": 2}}


@pytest.mark.parametrize(
    ("text", "limits", "problem"),
    [
        (hostile_charts.deep_yaml(500), yamlsafe.Limits(), "nested deeper than 200"),
        ("a: 1\n---\n" * 11, yamlsafe.Limits(documents=10), "more than 10 YAML documents"),
        ("x" * 101, yamlsafe.Limits(bytes=100), "101 bytes, more than the 100"),
        ("[" + "1," * 50 + "1]", yamlsafe.Limits(nodes=50), "more than 50 nodes"),
    ],
)
def test_each_bound_is_refused_with_what_it_was(
    text: str | bytes, limits: yamlsafe.Limits, problem: str
) -> None:
    with pytest.raises(yamlsafe.YamlLimitError, match=problem):
        list(yamlsafe.load_all(text, limits))


def test_bounded_loading_reads_what_safe_load_reads() -> None:
    text = "a: [1, 2.5, true, null, '3']\nb: {c: d}\n---\n- x\n---\n"
    assert list(yamlsafe.load_all(text)) == list(yaml.safe_load_all(text))
    with pytest.raises(yaml.constructor.ConstructorError):
        yamlsafe.load("!!python/object:os.system {}")


def test_the_render_check_refuses_an_alias_bomb_with_a_bounded_message() -> None:
    manifest = "kind: ConfigMap\nmetadata: {name: ok}\n---\n" + hostile_charts.alias_bomb().decode()
    message = render_check(Grants("team-a", ()), manifest, "team-a", ())
    assert message.startswith("the rendered manifest cannot be checked: more than")
    assert len(message) < 400


def test_the_render_check_refuses_too_many_objects() -> None:
    manifest = "".join(
        f"---\nkind: ConfigMap\nmetadata: {{name: c{i}}}\n" for i in range(MAX_OBJECTS + 1)
    )
    message = render_check(Grants("team-a", ()), manifest, "team-a", ())
    assert f"more than {MAX_OBJECTS} objects" in message


def test_a_render_check_message_names_at_most_ten_objects_each_clipped() -> None:
    found = [ForbiddenObject("ConfigMap", "n" * 5000 + str(i), "kube-system") for i in range(500)]
    message = describe_forbidden(Grants("team-a", ()), found)
    assert message.count("ConfigMap") == LISTED_OBJECTS
    assert "and 490 more" in message
    assert len(message) < 4000


def test_helm_failure_messages_are_clipped() -> None:
    failure = HelmFailure(FailureKind.FAILED, "x" * 100_000, transient=False)
    assert len(failure.message) == MESSAGE_LIMIT
    classified = classify("Error: " + "chart " * 200_000 + "\nError: template: bad")
    assert classified.kind is FailureKind.RENDER
    assert len(classified.message) <= MESSAGE_LIMIT


# -- templating ------------------------------------------------------------------------------

_OLD = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)  # the quadratic scanner this one replaced


@pytest.mark.parametrize(
    "text",
    [
        "",
        "plain",
        "{{ .Cluster.id }}",
        "a{{.Cluster.name}}b{{ .Cluster.labels.x/y }}c",
        "{{ {{ .Cluster.id }}",
        "{{{ .Cluster.id }}}",
        "}}{{ .Cluster.id }}}}",
        "{{ .Cluster.id }",
        "{{\n.Cluster.id\n}}",
        "{{}}",
        "{{{{}}}}",
        "x{{ .Cluster.id }}{{",
    ],
)
def test_the_linear_scanner_finds_what_the_regex_found(text: str) -> None:
    found = [(m.start(), m.end(), m.group(1)) for m in _OLD.finditer(text)]
    assert list(templating.expressions(text)) == found


def test_a_long_unclosed_template_is_a_spec_error_naming_the_value() -> None:
    text = "{{" * 30_000  # the 60k characters
    problems = templating.check_values({"a": {"b": text}}, "values.inline")
    assert problems == [
        (
            "values.inline.a.b",
            f"a templated string may hold at most {templating.MAX_CHARS} characters, "
            "this one has 60000",
        )
    ]


def test_the_scan_touches_each_character_a_bounded_number_of_times() -> None:
    """Counted, not timed: every `find` starts past the previous match."""
    text = "{{ .Cluster.id }}" * 900 + "{{" * 200
    starts = [start for start, _, _ in templating.expressions(text)]
    assert len(starts) == 900 and starts == sorted(set(starts))
    with pytest.raises(templating.TemplateError, match="not closed"):
        templating.variables(text)
    assert templating.render("{{ .Cluster.id }}" * 900, {"id": "c"}) == "c" * 900


# -- chart archives --------------------------------------------------------------------------


def _chart(root: Path, files: dict[str, bytes]) -> Path:
    root.mkdir(parents=True)
    for path, content in {"Chart.yaml": hostile_charts.chart_yaml(root.name), **files}.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(content)
    return root


CRD = b"""apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec: {group: example.com, scope: Namespaced, names: {kind: Widget, plural: widgets}}
"""


def test_a_decompression_bomb_subchart_is_refused_from_its_header(tmp_path: Path) -> None:
    bomb = hostile_charts.zero_bomb_tgz()
    assert len(bomb) < 200_000
    chart = _chart(tmp_path / "app", {"charts/bomb-0.1.0.tgz": bomb})
    with pytest.raises(ChartCrdError, match=r"big.yaml is 157286400 bytes, more than the"):
        crd_files(chart)


def test_subcharts_nested_too_deep_are_refused(tmp_path: Path) -> None:
    inner = hostile_charts.chart_tgz("c6", {"crds/x.yaml": CRD})
    for level in range(5, 0, -1):
        inner = hostile_charts.chart_tgz(f"c{level}", {f"charts/c{level + 1}-0.1.0.tgz": inner})
    chart = _chart(tmp_path / "app", {"charts/c1-0.1.0.tgz": inner})
    with pytest.raises(ChartCrdError, match="subcharts nested deeper than 5"):
        crd_files(chart)


def test_helmignore_hides_crds_from_herd_as_from_helm(tmp_path: Path) -> None:
    chart = _chart(
        tmp_path / "app",
        {
            ".helmignore": b"# not these\ncrds/extra*.yaml\nignored-dir/\n",
            "crds/widgets.yaml": CRD,
            "crds/extra-bomb.yaml": hostile_charts.alias_bomb(),
            "charts/ignored-dir/Chart.yaml": hostile_charts.chart_yaml("ignored-dir"),
            "charts/ignored-dir/crds/x.yaml": hostile_charts.alias_bomb(),
        },
    )
    assert [crd.name for crd in chart_crds(chart)] == ["widgets.example.com"]


@pytest.mark.parametrize(
    ("rules", "path", "is_dir", "ignored"),
    [
        ("*.md", "docs/readme.md", False, True),  # no slash: the base name
        ("crds/*.yaml", "crds/a.yaml", False, True),
        ("crds/*.yaml", "crds/sub/a.yaml", False, False),  # `*` stops at `/`
        ("/crds", "crds", True, True),
        ("tmp/", "tmp", False, False),  # directories only
        ("tmp/", "tmp", True, True),
        ("", "templates/.hidden.yaml", False, True),  # helm's default rule
        ("**/x", "a/x", False, False),  # helm refuses `**`: never matches
        ("[ab].yaml", "a.yaml", False, True),
    ],
)
def test_helmignore_rules_match_as_helm_matches(
    rules: str, path: str, is_dir: bool, ignored: bool
) -> None:
    assert Rules(rules).ignored(path, is_dir) is ignored


def test_an_alias_bomb_in_crds_is_a_crd_error(tmp_path: Path) -> None:
    chart = _chart(tmp_path / "app", {"crds/bomb.yaml": hostile_charts.alias_bomb()})
    with pytest.raises(ChartCrdError, match=r"app/crds/bomb\.yaml is refused: more than"):
        chart_crds(chart)


# -- metrics ---------------------------------------------------------------------------------


def test_metric_labels_are_bounded_per_process() -> None:
    from herd.operator.metrics import OVERFLOW, _Labels  # noqa: PLC0415

    labels = _Labels(limit=3)
    assert [labels.pair("c", f"chart{i}") for i in range(3)] == [
        ("c", "chart0"),
        ("c", "chart1"),
        ("c", "chart2"),
    ]
    assert labels.pair("c", "chart3") == (OVERFLOW, OVERFLOW)
    assert labels.pair("c", "chart1") == ("c", "chart1")  # known pairs keep their series
    assert labels.pair("c" * 300, "x") == (OVERFLOW, OVERFLOW)
    assert len(_Labels().pair("c" * 300, "x")[0]) == 63


# -- the grant comes before templating -------------------------------------------------------


def test_a_namespace_without_a_grant_fails_on_its_grant_before_templating(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from herd.plan.tenancy import grants_for  # noqa: PLC0415
    from tests.test_tenancy_wiring import FakeInventory, FakeValues, engine, make_stack, spec  # noqa: PLC0415

    templated: list[str] = []
    real = templating.check_values
    monkeypatch.setattr(
        clustervalues, "check_values", lambda *a: templated.append("called") or real(*a)
    )
    values = FakeValues()
    body = spec(namespace="nogrant-a")
    chart = body.charts[0].model_copy(
        update={"values": body.charts[0].values.model_copy(
            update={"templated": True, "inline": {"note": "{{" * 30_000}}
        )}
    )  # fmt: skip
    stack = make_stack("nogrant", body.model_copy(update={"charts": [chart]}))
    nobody = grants_for("nogrant", [], admin_namespace="herd-system")
    with pytest.raises(SpecError) as refused:
        asyncio.run(engine(FakeInventory([]), values).plan(stack, grants=nobody))
    assert templated == [] and values.calls == []  # nothing of the tenant's was touched
    assert "templated string" not in str(refused.value)
    assert len(str(refused.value)) < 2000
