"""Health gates: the spec (and `herd validate`), the pure decisions and kstatus rules
(the soak and the staged pass: tests/test_checks_soak.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from herd.api import parse_spec
from herd.api.checks import Checks, FailOnLevel, SecurityCheck, Threshold
from herd.api.grants import ClusterGrantSpec
from herd.cli import main
from herd.errors import SpecError
from herd.plan.checks import (
    Gate,
    Tally,
    merge_checks,
    metric_failure,
    render_query,
    security_gate,
    uses_release,
)
from herd.plan.kstatus import ObjectRef, Status, manifest_objects, object_status
from herd.plan.tenancy import Grants
from herd.plan.tenancy import spec_problems as grant_problems

BASE = {
    "targets": {"clusterIds": ["x"]},
    "charts": [{"name": "a", "repo": "https://r", "version": "1"}],
}


def spec_problems(rollout: dict[str, Any], **spec: Any) -> str:
    with pytest.raises(SpecError) as caught:
        parse_spec({**BASE, **spec, "rollout": rollout})
    return str(caught.value)


def metric(**fields: Any) -> dict[str, Any]:
    return {"name": "errors", "query": "sum(x)", "threshold": {"max": 0.05}, **fields}


@pytest.mark.parametrize(
    ("checks", "expected"),
    [
        ({"metrics": [metric(query="x{{ .Values.secret }}")]}, "is not a known field"),
        ({"metrics": [metric(query='{{ template "x" . }}')]}, "is not a known field"),
        ({"metrics": [metric(query="x{{ .Cluster.Id }")]}, "unclosed or nested"),
        ({"metrics": [metric(threshold={})]}, "needs max or min"),
        ({"metrics": [metric(threshold={"min": 2, "max": 1})]}, "above max"),
        ({"metrics": [metric(interval="100ms")]}, "at least 1s"),
        ({"metrics": [metric(failureLimit=0)]}, "failureLimit"),
        ({"metrics": [metric(), metric()]}, "used twice: errors"),
        ({"security": {"failOn": "Medium"}}, "failOn"),
        ({"readyness": True}, "readyness"),
    ],
)
def test_bad_checks_name_the_field(checks: dict[str, Any], expected: str) -> None:
    stage = {"name": "canary", "clusterIds": ["x"], "checks": checks}
    message = spec_problems({"stages": [stage]})
    assert expected in message
    assert "rollout.stages[0].checks" in message


def test_security_checks_need_neuvector() -> None:
    rollout = {"stages": [{"name": "c", "clusterIds": ["x"]}], "checks": {"security": {}}}
    assert "rollout.checks.security needs security: enabled" in spec_problems(rollout)
    parse_spec({**BASE, "security": "enabled", "rollout": rollout})


def test_chart_test_field() -> None:
    chart = {"name": "a", "repo": "https://r", "version": "1", "test": {"enabled": True}}
    spec = parse_spec({**BASE, "charts": [chart]})
    assert spec.charts[0].test is not None and spec.charts[0].test.timeout == "5m"
    with pytest.raises(SpecError, match=r"charts\[0\]\.test\.timeout"):
        parse_spec({**BASE, "charts": [{**chart, "test": {"timeout": "soon"}}]})


def test_stage_checks_merge_over_the_stack_wide_ones() -> None:
    stack = Checks.model_validate(
        {"metrics": [metric(), metric(name="latency")], "security": {"failOn": "High"}}
    )
    stage = Checks.model_validate({"readiness": False, "metrics": [metric(failureLimit=3)]})
    merged = merge_checks(stack, stage)
    assert merged is not None
    assert merged.readiness is False
    assert {m.name: m.failure_limit for m in merged.metrics} == {"errors": 3, "latency": 1}
    assert merged.security is not None and merged.security.fail_on is FailOnLevel.HIGH
    assert merge_checks(None, None) is None
    only_stack = merge_checks(stack, None)
    assert only_stack is not None and only_stack.readiness is True
    off = merge_checks(stack, Checks.model_validate({"security": None}))
    assert off is not None and off.security is None


def test_queries_fill_in_fields_as_data() -> None:
    query = 'rate(x{cluster="{{ .Cluster.Id }}",ns="{{.Release.Namespace}}"}[5m])'
    assert uses_release(query) and not uses_release("sum(x)")
    hostile = {"Name": 'a"}) or vector(1) #', "Namespace": "n\\", "Chart": "c"}
    out = render_query(query, {"Id": "c-1", "Name": "one"}, hostile)
    assert out == 'rate(x{cluster="c-1",ns="n\\\\"}[5m])'
    assert "{{" not in render_query("{{ .Release.Name }}", {"Id": "c"}, None)


@pytest.mark.parametrize(
    ("value", "threshold", "failed"),
    [
        (0.01, {"max": 0.05}, None),
        (0.2, {"max": 0.05}, "0.2 is above max 0.05"),
        (10.0, {"min": 50}, "10 is below min 50"),
        (None, {"max": 1}, "the query returned no value"),
        (float("nan"), {"max": 1}, "the query returned NaN"),
    ],
)
def test_metric_thresholds(value: float | None, threshold: dict[str, float], failed: str) -> None:
    assert metric_failure(value, Threshold.model_validate(threshold)) == failed


def test_tally_fails_a_cluster_at_its_limit() -> None:
    tally = Tally()
    assert tally.record("c", "errors", "high", 3) is None
    assert tally.record("c", "errors", None, 3) is None  # a pass does not reset the count
    assert tally.record("c", "errors", "high", 3) is None
    assert tally.record("c", "errors", "high", 3) == "check errors: high (3 failed evaluations)"
    assert tally.record("d", "readiness", "Pod x", 1) == "check readiness: Pod x"


def test_security_gate() -> None:
    check = SecurityCheck.model_validate({"pendingTimeout": "1m"})
    assert security_gate([], [], 0, check).gate is Gate.PASS
    held = security_gate(["img:1"], [], 0, check)
    assert held.gate is Gate.HOLD and "img:1 has critical" in held.reason
    assert security_gate([], ["img:2"], 30, check).gate is Gate.HOLD
    late = security_gate([], ["img:2"], 61, check)
    assert late.gate is Gate.FAIL and "after 1m" in late.reason


def deployment(**status: Any) -> dict[str, Any]:
    return {
        "kind": "Deployment",
        "metadata": {"generation": 2},
        "spec": {"replicas": 2},
        "status": {"observedGeneration": 2, **status},
    }


READY = {"updatedReplicas": 2, "availableReplicas": 2, "readyReplicas": 2, "replicas": 2}


@pytest.mark.parametrize(
    ("obj", "status"),
    [
        (deployment(**READY), Status.CURRENT),
        (deployment(**{**READY, "readyReplicas": 1}), Status.IN_PROGRESS),
        (deployment(**{**READY, "observedGeneration": 1}), Status.IN_PROGRESS),
        (
            deployment(conditions=[{"type": "Progressing", "reason": "ProgressDeadlineExceeded"}]),
            Status.FAILED,
        ),
        (
            {
                "kind": "Pod",
                "status": {
                    "phase": "Running",
                    "conditions": [{"type": "Ready", "status": "False"}],
                },
            },
            Status.IN_PROGRESS,
        ),
        (
            {
                "kind": "Pod",
                "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
            },
            Status.CURRENT,
        ),
        ({"kind": "Pod", "status": {"phase": "Failed"}}, Status.FAILED),
        (
            {
                "kind": "Pod",
                "status": {
                    "phase": "Running",
                    "containerStatuses": [
                        {"name": "x", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
                    ],
                },
            },
            Status.FAILED,
        ),
        (
            {"kind": "Job", "status": {"conditions": [{"type": "Failed", "status": "True"}]}},
            Status.FAILED,
        ),
        ({"kind": "Job", "status": {"startTime": "t"}}, Status.CURRENT),
        ({"kind": "PersistentVolumeClaim", "status": {"phase": "Pending"}}, Status.IN_PROGRESS),
        ({"kind": "Service", "spec": {"type": "LoadBalancer"}}, Status.IN_PROGRESS),
        ({"kind": "Service", "spec": {"type": "ClusterIP"}}, Status.CURRENT),
        (
            {
                "kind": "StatefulSet",
                "spec": {"replicas": 1},
                "status": {
                    "readyReplicas": 1,
                    "currentReplicas": 1,
                    "updateRevision": "a",
                    "currentRevision": "a",
                },
            },
            Status.CURRENT,
        ),
        (
            {
                "kind": "DaemonSet",
                "status": {
                    "desiredNumberScheduled": 2,
                    "numberReady": 1,
                    "currentNumberScheduled": 2,
                    "updatedNumberScheduled": 2,
                    "numberAvailable": 2,
                },
            },
            Status.IN_PROGRESS,
        ),
        (
            {"kind": "Widget", "status": {"conditions": [{"type": "Ready", "status": "False"}]}},
            Status.IN_PROGRESS,
        ),
        (
            {"kind": "Widget", "status": {"conditions": [{"type": "Stalled", "status": "True"}]}},
            Status.FAILED,
        ),
        ({"kind": "Widget"}, Status.CURRENT),
    ],
)
def test_kstatus_rules(obj: dict[str, Any], status: Status) -> None:
    assert object_status(obj)[0] is status


def test_manifest_objects_are_bounded_and_path_safe() -> None:
    manifest = "\n---\n".join(
        [
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}",
            "apiVersion: v1\nkind: Pod\nmetadata: {name: ../../secrets/x, namespace: ns}",
            "apiVersion: ../v1\nkind: Pod\nmetadata: {name: p}",
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: other}",
            "a: &a [1]\nb: *a",
        ]
    )
    assert manifest_objects(manifest, "ns") == [
        ObjectRef("apps/v1", "Deployment", "ns", "web"),
        ObjectRef("v1", "Pod", "other", "p"),
    ]


def test_herd_validate_names_the_bad_check_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    examples = Path(__file__).parent.parent / "examples"
    body = yaml.safe_load((examples / "canary-checks.yaml").read_text())
    metric = body["spec"]["rollout"]["stages"][0]["checks"]["metrics"][0]
    metric["query"] = "sum(x{ns={{ .Values.namespace }}})"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(body))
    assert main(["validate", "-f", str(path)]) == 2
    out = capsys.readouterr()
    assert "rollout.stages[0].checks.metrics[0].query" in out.out + out.err
    body["spec"]["rollout"]["stages"][0]["checks"]["metrics"][0]["charts"] = ["nope"]
    metric["query"] = "sum(x)"
    path.write_text(yaml.safe_dump(body))
    assert main(["validate", "-f", str(path)]) == 2
    assert "metrics[error-rate].charts: no chart named nope" in "".join(capsys.readouterr())


def test_a_bounded_stack_needs_the_addons_grant_for_metric_checks() -> None:
    """A metric check runs the Stack's PromQL on the cluster's whole Prometheus (every
    tenant's series): a bounded Stack without `addons: true` is refused before any helm."""
    stage = {"name": "canary", "clusterIds": ["x"], "checks": {"metrics": [metric()]}}
    spec = parse_spec({**BASE, "rollout": {"stages": [stage]}})
    grant = {"namespaces": ["team"], "clusters": {"clusterIds": ["x"]}, "targetNamespaces": ["*"]}
    bounded = Grants("team", (("g", ClusterGrantSpec.model_validate(grant)),))
    with_addons = Grants(
        "team", (("g", ClusterGrantSpec.model_validate({**grant, "addons": True})),)
    )

    found = [str(p) for p in grant_problems(bounded, spec)]
    assert any(
        p.startswith("spec.rollout.stages[0].checks.metrics: metric checks query") for p in found
    ), found
    assert grant_problems(with_addons, spec) == []
    assert grant_problems(Grants("team", unrestricted=True), spec) == []
