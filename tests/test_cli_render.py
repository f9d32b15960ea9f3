"""CLI rendering and exit codes from synthetic engine results: tables, JSON, plan rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from herd.api import SkippedCluster, parse_stack
from herd.api.v1 import Stack
from herd.cli import render, tables
from herd.engine.engine import Preview
from herd.engine.protocols import StackResult
from herd.names import LABEL_CHART, LABEL_CONFIG, LABEL_STACK
from herd.plan.clusters import Cluster, KubeconfigRef
from herd.plan.decide import Action, decide
from herd.plan.desired import StackPlan, plan_stack
from herd.plan.drift import ObjectDrift, ObjectRef, ReleaseDrift
from herd.plan.releases import ObservedRelease, ReleaseKey, owner_label
from herd.plan.results import ReleaseResult, State
from tests.conftest import chart, stack_body

OWNER = owner_label("default", "s")


def cluster(cluster_id: str) -> Cluster:
    return Cluster(cluster_id, cluster_id, {}, True, "file", KubeconfigRef.file(Path("k")))


def the_stack(*charts: dict[str, Any]) -> Stack:
    return parse_stack(stack_body(*charts))


def release(
    cluster_id: str,
    name: str,
    state: State,
    action: Action | None = None,
    *,
    revision: int | None = None,
    version: str | None = "1.0.0",
    message: str = "",
) -> ReleaseResult:
    key = ReleaseKey(cluster_id, "default", name)
    return ReleaseResult(key, name, state, action, revision, version, message)


def result(
    releases: list[ReleaseResult],
    *,
    plan: StackPlan | None = None,
    targets: tuple[str, ...] = ("c1",),
    skipped: tuple[str, ...] = (),
) -> StackResult:
    return StackResult(
        plan,
        [cluster(c) for c in targets],
        [SkippedCluster(cluster_id=c, reason="no kubeconfig") for c in skipped],
        releases,
    )


# -- tables ------------------------------------------------------------------------------


def test_table_aligns_columns_and_marks_missing_cells() -> None:
    text = tables.table(("A", "BB", "C"), [("x", None, "last cell"), ("long", 3, "")])

    assert text.splitlines() == ["A     BB  C", "x     -   last cell", "long  3   -"]


def test_release_rows_follow_clusters_then_waves_and_say_what_happened() -> None:
    stack = the_stack(chart("db"), chart("web", "db"))
    plan = plan_stack(stack.spec)
    done = result(
        [
            release("c2", "web", State.DEPLOYED, Action.NOTHING, revision=4),
            release("c1", "web", State.SKIPPED, message="dependency db failed"),
            release("c1", "old", State.UNINSTALLED, Action.UNINSTALL, revision=2, version=None),
            release("c1", "db", State.FAILED, Action.INSTALL, message="render failed"),
            release("c2", "db", State.DEPLOYED, Action.UPGRADE, revision=5),
        ],
        plan=plan,
        targets=("c1", "c2"),
    )

    rows = render.release_rows(done)

    assert [(r.cluster, r.chart, r.status, r.message) for r in rows] == [
        ("c1", "db", "Failed", "render failed"),
        ("c1", "web", "Skipped", "dependency db failed"),
        ("c1", "old", "Uninstalled", ""),
        ("c2", "db", "Deployed", "upgraded"),
        ("c2", "web", "Deployed", "unchanged"),
    ]
    table = render.release_table(rows).splitlines()
    assert table[0].split() == list(render.ReleaseRow.headers())
    assert table[4].split() == ["c2", "db", "db", "default", "Deployed", "5", "1.0.0", "upgraded"]


def test_json_document_holds_the_tables_rows() -> None:
    stack = the_stack()
    done = result([release("c1", "a", State.DEPLOYED, Action.INSTALL, revision=1)], skipped=("c9",))
    rows = render.release_rows(done)

    document = json.loads(json.dumps(render.release_document(stack, done, rows, "text")))

    assert document == {
        "stack": {"namespace": "default", "name": "s"},
        "phase": "Degraded",
        "summary": "text",
        "targets": ["c1"],
        "skipped": [{"cluster": "c9", "reason": "no kubeconfig"}],
        "releases": [
            {
                "cluster": "c1",
                "chart": "a",
                "release": "a",
                "namespace": "default",
                "status": "Deployed",
                "revision": 1,
                "version": "1.0.0",
                "action": "install",
                "message": "installed",
            }
        ],
    }
    table_cells = render.release_table(rows).splitlines()[1].split()
    assert table_cells == [str(document["releases"][0][k]) for k in ("cluster", "chart", "release",
        "namespace", "status", "revision", "version", "message")]  # fmt: skip


# -- exit codes --------------------------------------------------------------------------

DEPLOYED = release("c1", "a", State.DEPLOYED, Action.NOTHING)


@pytest.mark.parametrize(
    ("done", "code"),
    [
        (result([DEPLOYED]), 0),
        (result([DEPLOYED, release("c2", "a", State.UNINSTALLED)]), 0),  # departed cluster
        (result([DEPLOYED, release("c1", "b", State.FAILED)]), 1),
        (result([DEPLOYED, release("c1", "b", State.SKIPPED)]), 1),
        (result([release("c1", "a", State.UNREACHABLE)]), 1),
        (result([DEPLOYED], skipped=("c2",)), 1),
        (result([], targets=()), 1),  # nothing matched the targets: not a success
    ],
)
def test_apply_exit_is_0_only_when_everything_is_deployed(done: StackResult, code: int) -> None:
    assert render.apply_exit(done) == code


@pytest.mark.parametrize(
    ("done", "code", "text"),
    [
        (result([release("c1", "a", State.UNINSTALLED)]), 0, "Uninstalled 1 releases from 1"),
        (result([]), 0, "Nothing to uninstall"),
        (result([release("c1", "a", State.FAILED, message="boom")]), 1, "first: a on c1: boom"),
        (result([], skipped=("c1",)), 1, "1 of 1 clusters could not be read"),
    ],
)
def test_delete_exit_and_summary(done: StackResult, code: int, text: str) -> None:
    assert render.delete_exit(done) == code
    assert text in render.delete_summary(done)


def test_unreadable_clusters_join_the_skipped_ones_once() -> None:
    done = result([], targets=("c1", "c2"), skipped=("c1",))

    marked = render.with_unreadable(done, {"c1": "bad file", "c2": "connection refused"})

    assert [(s.cluster_id, s.reason) for s in marked.skipped] == [
        ("c1", "no kubeconfig"),
        ("c2", "connection refused; its releases may remain"),
    ]
    assert render.with_unreadable(done, {}) is done


# -- plan --------------------------------------------------------------------------------


def observed(
    name: str, *, owner: str | None = OWNER, config: str = "", status: str = "deployed"
) -> ObservedRelease:
    labels = {"name": name, LABEL_CHART: name, LABEL_CONFIG: config}
    if owner is not None:
        labels[LABEL_STACK] = owner
    return ObservedRelease("default", name, status, 3, labels)


def previews(stack: Stack, found: dict[str, ObservedRelease]) -> tuple[StackResult, list[Preview]]:
    """What `Engine.preview` returns for cluster c1 holding `found` (same pure decisions)."""
    plan = plan_stack(stack.spec)
    rows = []
    desired = plan.releases_for("c1")
    for d in desired:
        o = found.get(d.key.name)
        rows.append(Preview(d.key, d, o, decide(d, o, OWNER)))
    for name, o in found.items():
        if name not in {d.key.name for d in desired} and o.owner == OWNER:
            rows.append(Preview(ReleaseKey("c1", "default", name), None, o, decide(None, o, OWNER)))
    return result([], plan=plan), rows


def test_plan_rows_name_each_action_and_the_keys_a_new_release_sets() -> None:
    values = {"inline": {"db": {"password": "s3cr3t"}, "replicas": 2}}
    stack = the_stack(chart("a"), chart("b", "a"), chart("c", "b", values=values))
    current = plan_stack(stack.spec).releases_for("c1")[0].config
    found = {"a": observed("a", config=current), "b": observed("b", config="old")}
    done, rows = previews(stack, {**found, "gone": observed("gone")})

    plan_rows = render.plan_rows(stack, done, rows)

    assert [(r.chart, r.action, r.revision, r.detail) for r in plan_rows] == [
        ("a", "unchanged", 3, ""),
        ("b", "upgrade", 3, "values or chart source changed"),
        ("c", "install", None, "not installed; values: db, replicas"),
        ("gone", "uninstall", 3, "no longer in the Stack or its targets"),
    ]
    assert render.plan_exit(done, plan_rows) == render.EXIT_CHANGES
    assert render.plan_summary(done, plan_rows) == (
        "Plan: 1 to install, 1 to upgrade, 1 to uninstall, 1 unchanged on 1 clusters"
    )
    shown = render.plan_table(plan_rows) + json.dumps(
        render.plan_document(stack, done, plan_rows, "")
    )
    assert "replicas" in shown and "s3cr3t" not in shown  # keys, never values


def test_plan_rows_say_the_crd_policy_of_an_install_or_upgrade() -> None:
    stack = the_stack(
        chart("a", crds="CreateReplace"), chart("b", crds="Skip"), chart("c", crds="CreateReplace")
    )
    current = plan_stack(stack.spec).releases_for("c1")[2].config
    found = {"b": observed("b", config="old"), "c": observed("c", config=current)}
    done, rows = previews(stack, found)

    details = {r.chart: r.detail for r in render.plan_rows(stack, done, rows)}

    assert details == {
        "a": "not installed; CRDs: CreateReplace",
        "b": "values or chart source changed; CRDs: Skip",
        "c": "",  # unchanged: nothing is applied
    }


def test_plan_exit_0_when_nothing_changes_and_1_when_apply_cannot_succeed() -> None:
    stack = the_stack(chart("a"))
    current = plan_stack(stack.spec).releases_for("c1")[0].config
    done, rows = previews(stack, {"a": observed("a", config=current)})
    unchanged = render.plan_rows(stack, done, rows)
    done_conflict, rows_conflict = previews(stack, {"a": observed("a", owner=None)})
    conflict = render.plan_rows(stack, done_conflict, rows_conflict)

    assert render.plan_exit(done, unchanged) == render.EXIT_OK
    assert render.plan_document(stack, done, unchanged, "")["changes"] is False
    assert [(r.action, r.detail) for r in conflict] == [
        (
            "conflict",
            "release default/a exists and is managed by another tool; Herd will not take it over",
        )
    ]
    assert render.plan_exit(done_conflict, conflict) == render.EXIT_FAILED
    skipped = result([], plan=done.plan, skipped=("c2",))
    assert render.plan_exit(skipped, unchanged) == render.EXIT_FAILED


def test_long_value_key_lists_are_cut_in_the_table_not_in_json() -> None:
    values = {"inline": {f"k{i}": i for i in range(8)}}
    stack = the_stack(chart("a", values=values))
    done, rows = previews(stack, {})

    (row,) = render.plan_rows(stack, done, rows)

    assert row.detail == "not installed; values: k0, k1, k2, k3, k4 (+3 more)"
    assert len(render.plan_document(stack, done, [row], "")["releases"][0]["values"]) == 8


# -- status ------------------------------------------------------------------------------


def test_status_rows_list_herd_releases_only_and_filter_by_stack() -> None:
    found = {
        "c2": [observed("web", owner="ci.other", status="failed")],
        "c1": [observed("db"), observed("by-hand", owner=None)],
    }

    rows = render.status_rows(found)

    assert [(r.cluster, r.stack, r.release, r.status) for r in rows] == [
        ("c1", OWNER, "db", "deployed"),
        ("c2", "ci.other", "web", "failed"),
    ]
    assert [r.release for r in render.status_rows(found, OWNER)] == ["db"]
    assert render.status_exit(rows, {}) == render.EXIT_FAILED  # one release failed
    assert render.status_exit(rows[:1], {}) == render.EXIT_OK
    assert render.status_exit(rows[:1], {"c3": "refused"}) == render.EXIT_FAILED
    assert render.status_summary(rows, 3, {"c3": "refused"}) == (
        "2 Herd-managed releases on 2 clusters, 1 not deployed; 1 clusters could not be read"
    )
    document = render.status_document(rows, {"c3": "refused"}, "text")
    assert document["unreachable"] == [{"cluster": "c3", "reason": "refused"}]
    assert [r["release"] for r in document["releases"]] == ["db", "web"]


def test_a_value_a_cluster_cannot_render_is_invalid_and_fails_the_plan() -> None:
    values = {"templated": True, "inline": {"zone": "{{ .Cluster.labels.zone }}"}}
    stack = the_stack(chart("a", values=values))
    done, rows = previews(stack, {})  # cluster c1: no facts known, no zone label

    plan_rows = render.plan_rows(stack, done, rows)

    assert [r.action for r in plan_rows] == ["invalid"]
    assert ".Cluster.labels.zone" in plan_rows[0].detail
    assert render.plan_exit(done, plan_rows) == render.EXIT_FAILED
    assert "1 invalid" in render.plan_summary(done, plan_rows)


def test_status_and_plan_rows_show_drift() -> None:
    ref = ObjectRef("apps/v1", "Deployment", "default", "db")
    drift = ReleaseDrift(objects=(ObjectDrift(ref, ("/spec/replicas",)),))
    rows = render.status_rows({"c1": [observed("db")]})
    shown = render.with_drift(rows, {ReleaseKey("c1", "default", "db"): drift})
    assert [r.drift for r in shown] == ["Deployment/db: /spec/replicas"]
    assert render.with_drift(rows, {})[0].drift == ""
    row = render.PlanRow(
        "c1", "db", "db", "default", "unchanged", 1, "1.0.0", "", drift=drift.entries()
    )
    assert row.detail == "drift: Deployment/db: /spec/replicas"
