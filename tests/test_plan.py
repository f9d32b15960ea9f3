"""Plan decisions as plain tables of inputs (STYLE.md: decide, then act)."""

from __future__ import annotations

from typing import Any

import pytest

from herd.api import ChartSpec, StackSpec
from herd.errors import SpecError
from herd.names import LABEL_CHART, LABEL_CONFIG, LABEL_STACK, LABEL_VERSION, LABEL_WAVE
from herd.plan.decide import Action, decide
from herd.plan.desired import changed_keys, deep_merge, plan_stack
from herd.plan.releases import SHARED_OWNER, ObservedRelease, owner_label

OWNER = "default.rag"


def spec(*charts: dict[str, Any], env: str = "prod") -> StackSpec:
    return StackSpec.model_validate(
        {"env": env, "targets": {"clusterIds": ["c-m-1"]}, "charts": list(charts)}
    )


def chart(name: str, *deps: str, **fields: Any) -> dict[str, Any]:
    return {
        "name": name,
        "repo": "https://r",
        "version": "1.0.0",
        "dependsOn": list(deps),
        **fields,
    }


def addon(name: str, namespace: str) -> ChartSpec:
    return ChartSpec(name=name, repo="https://addons", version="2.0.0", namespace=namespace)


PLAN = plan_stack(spec(chart("db", values={"inline": {"size": 1}}), chart("llm", "db")))
DB = PLAN.releases_for("c-m-1")[0]


def observed(
    status: str = "deployed", owner: str | None = OWNER, config: str = DB.config
) -> ObservedRelease:
    labels = {"name": "db", "status": status, "version": "3", LABEL_CONFIG: config}
    if owner:
        labels[LABEL_STACK] = owner
    return ObservedRelease("default", "db", status, 3, labels)


@pytest.mark.parametrize(
    ("desired", "found", "action"),
    [
        (DB, None, Action.INSTALL),
        (DB, observed(), Action.NOTHING),
        (DB, observed(config="other"), Action.UPGRADE),
        (DB, observed(status="failed"), Action.UPGRADE),
        (DB, observed(status="superseded"), Action.UPGRADE),
        (DB, observed(status="uninstalled"), Action.INSTALL),
        (DB, observed(status="pending-install"), Action.RECOVER),
        (DB, observed(status="pending-upgrade"), Action.RECOVER),
        (DB, observed(status="pending-rollback"), Action.RECOVER),
        (DB, observed(status="uninstalling"), Action.RECOVER),
        (DB, observed(owner=None), Action.CONFLICT),
        (DB, observed(owner="default.other-stack"), Action.CONFLICT),
        (None, observed(), Action.UNINSTALL),
        (None, observed(status="pending-upgrade"), Action.RECOVER),
        (None, observed(owner=None), Action.NOTHING),
        (None, observed(owner="default.other-stack"), Action.NOTHING),
        (None, None, Action.NOTHING),
    ],
)
def test_decide(desired: Any, found: ObservedRelease | None, action: Action) -> None:
    assert decide(desired, found, OWNER).action is action


def test_conflict_names_the_owner() -> None:
    assert "another tool" in decide(DB, observed(owner=None), OWNER).reason
    assert "Stack default.x" in decide(DB, observed(owner="default.x"), OWNER).reason


def test_values_merge_in_documented_order() -> None:
    values = {
        "inline": {"a": 1, "nested": {"x": 1, "y": 1}, "list": [1, 2]},
        "envs": {"prod": {"nested": {"y": 2}, "list": [3]}, "dev": {"a": 99}},
        "from": [{"kind": "ConfigMap", "name": "cm"}, {"kind": "Secret", "name": "s"}],
    }
    from_values = {
        ("ConfigMap", "cm", "values.yaml"): {"nested": {"z": 3}, "a": 2},
        ("Secret", "s", "values.yaml"): {"a": 3},
    }
    plan = plan_stack(spec(chart("db", values=values)), from_values=from_values)
    assert plan.releases_for("c")[0].values == {
        "a": 3,
        "nested": {"x": 1, "y": 2, "z": 3},
        "list": [3],
    }


def test_missing_values_source_is_a_spec_error_unless_optional() -> None:
    values = {
        "from": [
            {"kind": "Secret", "name": "s"},
            {"kind": "ConfigMap", "name": "o", "optional": True},
        ]
    }
    with pytest.raises(SpecError) as caught:
        plan_stack(spec(chart("db", values=values)), from_values={})
    assert [str(p) for p in caught.value.problems] == [
        "spec.charts[0].values.from[0]: Secret 's' has no key 'values.yaml' "
        "(set optional: true to allow that)"
    ]


def test_addons_are_the_first_wave_and_every_chart_depends_on_them() -> None:
    plan = plan_stack(
        spec(chart("db"), chart("llm", "db")),
        addons=[addon("neuvector", "cattle-neuvector-system"), addon("agent", "obs")],
    )
    assert plan.waves == (("neuvector", "agent"), ("db",), ("llm",))
    assert [(r.chart.name, r.wave) for r in plan.releases_for("c")] == [
        ("neuvector", 0),
        ("agent", 0),
        ("db", 1),
        ("llm", 2),
    ]


def test_user_chart_on_an_addon_release_is_a_spec_error() -> None:
    with pytest.raises(
        SpecError,
        match=r"spec\.charts\[1\]\.releaseName: release "
        r"cattle-neuvector-system/neuvector is reserved for the neuvector add-on",
    ):
        plan_stack(
            spec(
                chart("db"),
                chart("nv", namespace="cattle-neuvector-system", releaseName="neuvector"),
            ),
            addons=[addon("neuvector", "cattle-neuvector-system")],
        )


def test_cluster_values_change_only_that_cluster() -> None:
    plan = plan_stack(
        spec(chart("db")), cluster_values=lambda cluster, _chart: {"clusterName": cluster}
    )
    one, two = plan.releases_for("one")[0], plan.releases_for("two")[0]
    assert one.values == {"clusterName": "one"}
    assert one.config != two.config


def test_config_digest_follows_version_and_values_only() -> None:
    def digest(**fields: Any) -> str:
        return plan_stack(spec(chart("db", **fields))).releases_for("c")[0].config

    assert digest() == digest(wait=True, timeout="9m")  # flags of the operation, not the release
    assert digest() != digest(version="1.0.1")
    assert digest() != digest(values={"inline": {"a": 1}})


def test_labels_carry_chart_wave_and_config() -> None:
    llm = PLAN.releases_for("c")[1]
    assert llm.labels == {
        LABEL_CHART: "llm",
        LABEL_WAVE: "1",
        LABEL_CONFIG: llm.config,
        LABEL_VERSION: "1.0.0",
    }


@pytest.mark.parametrize(
    ("old", "new", "reason"),
    [
        ("1.0.0", "1.0.0", "values or chart source changed"),
        ("0.9.0", "1.0.0", "chart version 0.9.0 -> 1.0.0"),
        (None, "1.0.0", "values or chart source changed"),
        ("1.0.0_build.1", "1.0.0+build.1", "values or chart source changed"),
    ],
)
def test_upgrade_reason_names_the_version_change(old: str | None, new: str, reason: str) -> None:
    desired = plan_stack(spec(chart("db", version=new))).releases_for("c")[0]
    labels = {LABEL_STACK: OWNER, LABEL_CONFIG: "stale"}
    if old:
        labels[LABEL_VERSION] = old
    found = ObservedRelease("default", "db", "deployed", 1, labels)
    assert decide(desired, found, OWNER).reason == reason


@pytest.mark.parametrize(
    ("namespace", "name", "expected"),
    [("default", "rag", "default.rag"), ("ns", "x" * 80, None)],
)
def test_owner_label_is_a_valid_label_value(
    namespace: str, name: str, expected: str | None
) -> None:
    value = owner_label(namespace, name)
    assert len(value) <= 63
    if expected:
        assert value == expected


def test_deep_merge_and_changed_keys() -> None:
    assert deep_merge({"a": {"b": 1}}, {"a": {"c": 2}}) == {"a": {"b": 1, "c": 2}}
    assert changed_keys({"a": {"b": 1, "c": 2}, "d": 1}, {"a": {"b": 2, "c": 2}, "e": 1}) == [
        "a.b",
        "d",
        "e",
    ]


def test_addon_releases_are_shared_between_stacks() -> None:
    addons = [addon("neuvector", "cattle-neuvector-system")]
    one = plan_stack(spec(chart("db")), addons=addons).releases_for("c")[0]
    other = plan_stack(spec(chart("api")), addons=addons).releases_for("c")[0]
    assert one.owner == other.owner == SHARED_OWNER
    assert plan_stack(spec(chart("db")), addons=addons).releases_for("c")[1].owner is None
    installed = ObservedRelease(
        "cattle-neuvector-system",
        "neuvector",
        "deployed",
        1,
        {LABEL_STACK: SHARED_OWNER, LABEL_CONFIG: one.config},
    )
    # Another Stack wanting the same add-on finds it up to date, not a conflict ...
    assert decide(other, installed, "default.other").action is Action.NOTHING
    # ... and a Stack that no longer wants it leaves it alone.
    assert decide(None, installed, OWNER).action is Action.NOTHING
