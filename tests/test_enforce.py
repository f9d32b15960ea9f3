"""`security: {enforce: true, failOn}`: the API's forms and errors, and the admission rule
object (`herd.plan.admission`). Tables of inputs; the object meets NeuVector's real CRD in
`e2e/test_enforce.py`."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from herd.api import parse_spec
from herd.api.status import AdmissionStatus, SkippedCluster
from herd.api.v1 import SecuritySpec, Toggle
from herd.errors import SpecError
from herd.plan.admission import admission_rule, rule_name
from herd.status.pipeline import Kind, Rows, StatusInputs, compose

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def spec(security: object) -> dict[str, object]:
    return {
        "security": security,
        "targets": {"clusterIds": ["a"]},
        "charts": [{"name": "x", "repo": "https://e.x", "version": "1", "namespace": "n"}],
    }


@pytest.mark.parametrize(
    ("security", "toggle", "enforcement"),
    [
        ("enabled", Toggle.ENABLED, None),
        (True, Toggle.ENABLED, None),
        ("disabled", Toggle.DISABLED, None),
        ({"enforce": True}, Toggle.ENABLED, SecuritySpec(enforce=True, fail_on="High")),
        (
            {"enforce": True, "failOn": "Critical"},
            Toggle.ENABLED,
            SecuritySpec(enforce=True, fail_on="Critical"),
        ),
        ({"enforce": False}, Toggle.ENABLED, None),  # NeuVector without the rule
    ],
)
def test_security_forms(security: object, toggle: Toggle, enforcement: SecuritySpec | None) -> None:
    parsed = parse_spec(spec(security))
    assert parsed.security_toggle is toggle
    assert parsed.enforcement == enforcement


@pytest.mark.parametrize(
    ("security", "problem"),
    [
        ("on", "spec.security: Input should be 'enabled' or 'disabled', or {enforce: true}"),
        ({"enforce": True, "failOn": "Medium"}, "spec.security: failOn: Input should be"),
        ({"enforce": "yes please"}, "spec.security: enforce: Input should be a valid boolean"),
        ({"enforced": True}, "spec.security: enforced: Extra inputs are not permitted"),
        (3, "spec.security: Input should be 'enabled' or 'disabled', or {enforce: true}"),
    ],
)
def test_security_errors_name_the_field(security: object, problem: str) -> None:
    with pytest.raises(SpecError) as raised:
        parse_spec(spec(security))
    assert problem in str(raised.value)


def test_the_rule_denies_in_the_stack_namespaces_at_fail_on() -> None:
    high = admission_rule("team-a", "rag", ["b", "a", "b"], "High")
    assert high["apiVersion"] == "neuvector.com/v1"
    assert high["kind"] == "NvAdmissionControlSecurityRule"
    assert high["metadata"]["name"] == rule_name("team-a", "rag")
    assert high["metadata"]["labels"] == {
        "herd.suse.com/stack-namespace": "team-a",
        "herd.suse.com/stack-name": "rag",
    }
    (rule,) = high["spec"]["rules"]
    assert (rule["action"], rule["rule_mode"], rule["disabled"]) == ("deny", "protect", False)
    assert rule["criteria"] == [
        {"name": "namespace", "op": "containsAny", "value": "a,b"},
        {"name": "cveHighCount", "op": ">=", "value": "1"},
    ]
    critical = admission_rule("team-a", "rag", ["a"], "Critical")
    assert critical["spec"]["rules"][0]["criteria"][1] == {
        "name": "cveScoreCount",
        "op": ">=",
        "value": "9",
        "sub_criteria": [{"name": "count", "op": ">=", "value": "1"}],
    }


def test_rule_names_are_herds_own_and_distinct() -> None:
    names = {rule_name(ns, n) for ns in ("a", "b", "a-b") for n in ("x", "b-x", "")}
    assert len(names) == 9
    assert all(n.startswith("herd-stack-") and len(n) == 27 for n in names)
    long = admission_rule("n", "x" * 100, ["a"], "High")
    assert long["metadata"]["labels"] == {"herd.suse.com/stack-namespace": "n"}


def test_the_status_shows_the_rule_and_keeps_it_while_a_pass_is_in_flight() -> None:
    rule = AdmissionStatus(
        rule="herd-stack-0123456789abcdef",
        fail_on="High",
        namespaces=["a"],
        problems=[SkippedCluster(cluster_id="c1", reason="cannot write ...: 404 Not Found")],
    )
    final = compose(StatusInputs(Kind.FINAL, 1, NOW, rows=Rows(admission=rule)))
    assert final.admission == rule
    assert final.model_dump(by_alias=True, exclude_none=True)["admission"]["failOn"] == "High"
    progress = compose(StatusInputs(Kind.PROGRESS, 1, NOW, previous=final, rows=Rows()))
    assert progress.admission == rule
    off = compose(StatusInputs(Kind.FINAL, 2, NOW, previous=final, rows=Rows()))
    assert off.admission is None
