"""Tables for `herd.plan.drift`: what counts as drift, the ignore rules, the policy merge,
and the spec's validation (`herd.api.drift`)."""

from __future__ import annotations

from typing import Any, cast

import pytest
from benchmarks.drift_bench import build
from pydantic import ValidationError

from herd.api.drift import DriftIgnore, DriftSpec, DriftTarget
from herd.clusters.drift import DriftMemory, ReleaseCheck, check_cluster
from herd.plan.drift import (
    CORRECT,
    ObjectRef,
    Policy,
    ReleaseDrift,
    applied_object,
    drifted_paths,
    effective,
    manifest_objects,
)
from herd.plan.releases import ReleaseKey

DEPLOY = ObjectRef("apps/v1", "Deployment", "default", "web")
CM = ObjectRef("v1", "ConfigMap", "default", "conf")


def deployment(**spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "replicas": 2,
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {
                "containers": [
                    {
                        "name": "web",
                        "image": "nginx:1",
                        "ports": [{"containerPort": 80}],
                        "resources": {"limits": {"cpu": "0.5", "memory": "128Mi"}},
                    }
                ]
            },
        },
    }
    body.update(spec)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web", "app.kubernetes.io/name": "web"}},
        "spec": body,
    }


def live_deployment(**changes: Any) -> dict[str, Any]:
    """What the API server returns: defaults added, quantities normalised."""
    obj = deployment(**changes)
    obj["metadata"] |= {"resourceVersion": "7", "generation": 1, "uid": "u"}
    spec = obj["spec"]
    spec["strategy"] = {"type": "RollingUpdate"}
    container = spec["template"]["spec"]["containers"][0]
    container["imagePullPolicy"] = "IfNotPresent"
    container["resources"]["limits"]["cpu"] = "500m"
    container["ports"][0]["protocol"] = "TCP"
    spec["template"]["spec"]["containers"].append({"name": "sidecar", "image": "x"})
    obj["status"] = {"replicas": 2}
    return obj


@pytest.mark.parametrize(
    ("live", "paths"),
    [
        (live_deployment(), []),
        (live_deployment(replicas=0), ["/spec/replicas"]),
        (
            {**live_deployment(), "metadata": {"name": "web", "labels": {"app": "web"}}},
            ["/metadata/labels/app.kubernetes.io~1name"],
        ),
    ],
    ids=["defaults-are-not-drift", "replicas", "label-removed"],
)
def test_deployment_drift(live: dict[str, Any], paths: list[str]) -> None:
    assert drifted_paths(DEPLOY, deployment(), live) == paths


def test_image_changed_is_found_by_container_name() -> None:
    live = live_deployment()
    containers = live["spec"]["template"]["spec"]["containers"]
    containers.reverse()  # a sidecar injected first: matched by name, not index
    containers[1]["image"] = "nginx:2"
    assert drifted_paths(DEPLOY, deployment(), live) == ["/spec/template/spec/containers/0/image"]


def test_configmap_data_edit_and_scalars_compare_as_kubernetes_does() -> None:
    desired = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}
    desired["data"] = {"a": "1", "b": "x"}
    live = {**desired, "data": {"a": 1, "b": "y", "extra": "z"}}
    assert drifted_paths(CM, desired, live) == ["/data/b"]


def test_secret_string_data_compares_with_data() -> None:
    ref = ObjectRef("v1", "Secret", "default", "s")
    desired = {"kind": "Secret", "metadata": {"name": "s"}, "stringData": {"k": "v"}}
    assert drifted_paths(ref, desired, {"kind": "Secret", "data": {"k": "dg=="}}) == []
    assert drifted_paths(ref, desired, {"kind": "Secret", "data": {"k": "dw=="}}) == ["/data/k"]


def test_ignore_rules_by_path_and_target() -> None:
    live = live_deployment(replicas=5)
    everywhere = DriftIgnore(paths=["/spec/replicas"])
    other = DriftIgnore(paths=["/spec"], target=DriftTarget(kind="StatefulSet"))
    mine = DriftIgnore(paths=["/spec"], target=DriftTarget(group="apps", name="web"))
    assert drifted_paths(DEPLOY, deployment(), live, [everywhere]) == []
    assert drifted_paths(DEPLOY, deployment(), live, [other]) == ["/spec/replicas"]
    assert drifted_paths(DEPLOY, deployment(), live, [mine]) == []


def test_applied_object_keeps_ignored_fields_as_live() -> None:
    live = live_deployment(replicas=5)
    applied = applied_object(deployment(), live, ["/spec/replicas", "/spec/absent"])
    assert applied["spec"]["replicas"] == 5
    assert applied["spec"]["template"] == deployment()["spec"]["template"]


def test_manifest_objects_place_namespaced_kinds_in_the_release_namespace() -> None:
    text = (
        "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: s\n"
        "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: r\n"
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  namespace: other\n"
        "---\n# only a comment\n"
    )
    refs = [ref for ref, _ in manifest_objects(text, "apps")]
    assert refs == [
        ObjectRef("v1", "Service", "apps", "s"),
        ObjectRef("rbac.authorization.k8s.io/v1", "ClusterRole", "", "r"),
        ObjectRef("v1", "ConfigMap", "other", "c"),
    ]


def test_policy_defaults_and_chart_override() -> None:
    assert effective(None, None).mode == "Warn"
    assert effective(None, None).interval == 600.0
    stack = DriftSpec(mode="Correct", interval="1m", ignore=[DriftIgnore(paths=["/a"])])
    chart = DriftSpec(interval="30s", force=True, ignore=[DriftIgnore(paths=["/b"])])
    policy = effective(stack, chart)
    assert (policy.mode, policy.interval, policy.force) == ("Correct", 30.0, True)
    assert [r.paths for r in policy.ignore] == [["/a"], ["/b"]]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"ignore": [{"paths": ["spec/replicas"]}]}, "ignore.0.paths"),
        ({"ignore": [{"paths": ["/a~2b"]}]}, "ignore.0.paths"),
        ({"interval": "10 minutes"}, "interval"),
        ({"interval": "0s"}, "interval"),
        ({"mode": "Fix"}, "mode"),
    ],
)
def test_invalid_drift_specs_name_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as error:
        DriftSpec.model_validate(body)
    assert field in str(error.value)


def test_a_check_that_came_due_during_a_long_pass_still_wakes_the_stack() -> None:
    """A 2 s interval and a pass of 5 s: the check was due 3 s before the pass ended. The
    Stack wakes soon for it, not at its resync; a release no pass reached for long does
    not keep waking it."""
    memory = DriftMemory()
    key = ReleaseKey("c", "ns", "web")
    memory.expect("o", key, 2.0, now=100.0)  # written in a pass that started at 100
    known = memory.known[("o", key)]
    assert 100.0 < known.due <= 102.0
    assert memory.wait("o", now=105.0) == 1.0  # overdue, reached 5 s ago: soon
    known.reached = 100.0 - 400.0  # no pass reached it for longer than the grace
    assert memory.wait("o", now=105.0) is None


def test_stacks_are_spread_over_the_interval_and_a_stacks_releases_share_one_slot() -> None:
    """1,000 Stacks, a 10 min interval: each tenth of the interval holds 5-15% of their
    checks (not all at once), each slot within one interval; a Stack's releases, expected
    at different moments, share its slot (one pass per interval for the Stack)."""
    memory, interval, now = DriftMemory(), 600.0, 1_000_000.0
    slots = [memory.slot(f"ns.stack-{i}", interval, now) for i in range(1000)]
    assert all(now < s <= now + interval for s in slots)
    tenths = [0] * 10
    for slot in slots:
        tenths[min(9, int((slot - now) / interval * 10))] += 1
    assert all(50 <= n <= 150 for n in tenths), tenths
    for index, name in enumerate(["a", "b", "c"]):
        memory.expect("ns.one", ReleaseKey("c", "ns", name), interval, now + 7 * index)
    dues = {k.due for (owner, _), k in memory.known.items() if owner == "ns.one"}
    assert len(dues) == 1, dues


def test_a_changed_ignore_rule_has_the_objects_compared_again() -> None:
    """An edit under an ignore rule is not drift; once the rule is gone the object is read
    and compared again, though its resourceVersion did not move since."""
    api, built = build(1)  # the benchmark's in-memory API: one release of the app's shape
    key, recorded = built[0].key, built[0].recorded
    memory, now = DriftMemory(), 1_000.0
    memory.expect("o", key, 0.0, now)
    rule = DriftIgnore(paths=["/data/message"])

    def checked(ignore: tuple[DriftIgnore, ...], at: float) -> ReleaseDrift:
        due = ReleaseCheck(key, 1, Policy(interval=1.0, ignore=ignore), recorded=recorded)
        sim: Any = api
        return check_cluster(memory, "o", [due], admin=sim, writer=sim, now=at)[key]

    path = f"/api/v1/namespaces/{key.namespace}/configmaps/{key.name}"
    api.put(path, {**api.objects[path], "data": {"message": "edited"}})
    assert checked((rule,), now).count == 0
    assert checked((rule,), now + 2).count == 0
    assert checked((), now + 4).entries() == [f"ConfigMap/{key.name}: /data/message"]


def test_a_correction_carries_helms_own_label_and_release_annotations() -> None:
    """What helm adds to every object (not in its stored manifest) is applied back with
    it: applied without them as helm's field manager, they would be removed."""
    api, built = build(1)
    key, recorded = built[0].key, built[0].recorded
    path = f"/api/v1/namespaces/{key.namespace}/configmaps/{key.name}"
    del api.objects[path]  # deleted by hand: re-created
    memory, now, sim = DriftMemory(), 1_000.0, cast(Any, api)
    memory.expect("o", key, 0.0, now)
    due = ReleaseCheck(key, 1, Policy(CORRECT, 1.0), True, recorded)
    assert check_cluster(memory, "o", [due], admin=sim, writer=sim, now=now)[key].corrected == 1
    meta = api.objects[path]["metadata"]
    assert meta["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    assert meta["annotations"] == {
        "meta.helm.sh/release-name": key.name,
        "meta.helm.sh/release-namespace": key.namespace,
    }
