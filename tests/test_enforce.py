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
from herd.plan.admission import is_empty, rule_id, stack_rule, with_rule, without_rule
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
    rule = stack_rule("team-a", "rag", ["b", "a", "b"], "High")
    assert rule == {
        "action": "deny",
        "comment": f"{rule_id('team-a', 'rag')}: Herd Stack team-a/rag denies images with "
        "High or higher vulnerabilities",
        "disabled": False,
        "rule_mode": "protect",
        "criteria": [
            {"name": "namespace", "op": "containsAny", "value": "a,b"},
            {"name": "cveHighCount", "op": ">=", "value": "1"},
        ],
    }
    critical = stack_rule("team-a", "rag", ["a"], "Critical")
    assert critical["criteria"][1] == {
        "name": "cveScoreCount",
        "op": ">=",
        "value": "9",
        "sub_criteria": [{"name": "count", "op": ">=", "value": "1"}],
    }


def test_one_local_object_holds_every_stacks_rule_and_the_admins() -> None:
    admin = {"action": "deny", "comment": "no root", "criteria": []}
    current = {
        "apiVersion": "neuvector.com/v1",
        "kind": "NvAdmissionControlSecurityRule",
        "metadata": {"name": "local", "resourceVersion": "7", "uid": "u", "managedFields": []},
        "spec": {"config": {"enable": True, "mode": "protect", "client_mode": "service"},
                 "rules": [admin]},
    }  # fmt: skip
    a_high = stack_rule("t", "a", ["x"], "High")
    b_rule = stack_rule("t", "b", ["y"], "High")
    both = with_rule(with_rule(current, a_high), b_rule)
    assert both["metadata"] == {"name": "local", "resourceVersion": "7"}
    assert both["spec"]["rules"] == [admin, a_high, b_rule]
    assert both["spec"]["config"] == current["spec"]["config"]
    a_critical = stack_rule("t", "a", ["x"], "Critical")
    assert with_rule(both, a_critical)["spec"]["rules"] == [admin, b_rule, a_critical]
    assert current["spec"]["rules"] == [admin]  # never changed in place
    left = without_rule(both, "t", "a")
    assert left is not None
    assert left["spec"]["rules"] == [admin, b_rule]
    assert without_rule(left, "t", "a") is None  # nothing of its: no write
    assert without_rule(None, "t", "a") is None
    new = with_rule(None, a_high)
    assert new["metadata"] == {"name": "local"}  # NeuVector accepts no other name
    emptied = without_rule(new, "t", "a")
    assert emptied is not None
    assert is_empty(emptied)
    assert not is_empty(left)
    assert not is_empty({"spec": {"rules": [], "config": {"enable": True}}})


def test_rule_ids_are_herds_own_and_distinct() -> None:
    ids = {rule_id(ns, n) for ns in ("a", "b", "a-b") for n in ("x", "b-x", "")}
    assert len(ids) == 9
    assert all(i.startswith("herd-stack-") and len(i) == 27 for i in ids)
    # A rule whose comment only looks like a Stack's in its middle is not taken for it.
    other = {"action": "deny", "comment": f"copy of {rule_id('t', 'a')}: x", "criteria": []}
    assert without_rule({"spec": {"rules": [other]}}, "t", "a") is None


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
