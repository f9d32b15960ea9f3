"""Per-cluster values, templated values and `spec.mode: DryRun` on real control planes.

The operator runs as in `e2e/test_operator.py`, with its own Rancher namespace whose three
provisioning Clusters point at the test bed's three downstream clusters, each labelled
differently. The operator tests run in order on one Stack, like a user would: deploy with
per-cluster values, relabel one cluster, break one cluster's template, dry-run an edit,
then apply it. Facts are checked where they live: deployed values with `helm get values`,
"upgraded only that cluster" and "no helm write" by helm revisions. The last test does the
same from CI with `herd plan` / `herd apply` on kubeconfig files.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.testbed import rancher
from e2e.testbed.controlplane import Cluster as BedCluster
from e2e.testbed.helpers import eventually, kubectl
from e2e.testbed.herd_cli import herd, unique
from e2e.testbed.operator_run import VENV_BIN, Operator, helm_releases, run_operator

FLEET_NS = "fleet-cv"
STACK = "cv-stack"
NS = "op-cv"  # the test ClusterGrant covers op-* namespaces
IDS = {
    "downstream-1": "c-m-cv000001",
    "downstream-2": "c-m-cv000002",
    "downstream-3": "c-m-cv000003",
}
LABELS = {
    "downstream-1": {"team": "cv", "region": "eu", "zone": "a"},
    "downstream-2": {"team": "cv", "region": "eu", "zone": "b"},
    "downstream-3": {"team": "cv", "region": "us", "zone": "c"},
}
MESSAGE = "hello {{ .Cluster.name }} in {{ .Cluster.labels.zone }}"


def helm(cluster: BedCluster, *args: str) -> str:
    return subprocess.run(
        [str(VENV_BIN / "helm"), "--kubeconfig", str(cluster.kubeconfig), *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout


def deployed_values(cluster: BedCluster, release: str, namespace: str = NS) -> dict[str, Any]:
    values: dict[str, Any] = json.loads(
        helm(cluster, "get", "values", release, "-n", namespace, "-o", "json")
    )
    return values


def revisions(clusters: list[BedCluster], namespace: str = NS) -> dict[tuple[str, str], int]:
    """(cluster, release) -> helm revision, for every release in `namespace`."""
    return {
        (c.name, name): int(r["revision"])
        for c in clusters
        for name, r in helm_releases(c, namespace).items()
    }


def chart(name: str, repo: str, **fields: Any) -> dict[str, Any]:
    return {
        "name": name,
        "chart": "app",
        "repo": repo,
        "version": "0.1.0",
        "namespace": NS,
    } | fields


def web(repo: str, **fields: Any) -> dict[str, Any]:
    """Templated message; eu clusters get 2 replicas; downstream-3 its own message."""
    values = {
        "templated": True,
        "inline": {"message": MESSAGE, "replicaCount": 1},
        "clusters": [
            {"selector": {"matchLabels": {"region": "eu"}}, "inline": {"replicaCount": 2}},
            {
                "clusterIds": [IDS["downstream-3"]],
                "inline": {"message": "us {{ .Cluster.labels.region }} {{ .Cluster.id }}"},
            },
        ],
    }
    return chart("web", repo, values=values, **fields)


def body(charts: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "herd.suse.com/v1",
        "kind": "Stack",
        "metadata": {"name": STACK, "namespace": "default"},
        "spec": {
            "targets": {"selector": {"matchLabels": {"team": "cv"}}},
            "charts": charts,
            **spec,
        },
    }


def rows(status: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """Status rows by (cluster id, chart)."""
    return {(r["clusterId"], r["chartName"]): r for r in status.get("deployments", [])}


def relabel(operator: Operator, cluster: str, **changes: str | None) -> None:
    """Set the cluster's labels: its first ones with `changes` (None removes a label)."""
    labels = {**LABELS[cluster], **changes}
    rancher.set_labels(
        operator.management.kubeconfig,
        f"op-{cluster}",
        {k: v for k, v in labels.items() if v is not None},
        namespace=FLEET_NS,
    )


@pytest.fixture(scope="module")
def operator(
    management: BedCluster, downstream: list[BedCluster], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operator]:
    with run_operator(
        management,
        downstream,
        tmp_path_factory.mktemp("operator-cv"),
        fleet_ns=FLEET_NS,
        ids=IDS,
        labels=LABELS,
    ) as running:
        running.name = STACK
        yield running


def test_per_cluster_and_templated_values_land_on_the_right_clusters(
    operator: Operator, downstream: list[BedCluster], chart_repo_url: str
) -> None:
    operator.apply(
        body([web(chart_repo_url), chart("keep", chart_repo_url), chart("old", chart_repo_url)])
    )

    operator.settled("Deployed")

    one, two, three = downstream
    assert deployed_values(one, "web") == {
        "message": "hello op-downstream-1 in a",
        "replicaCount": 2,
    }
    assert deployed_values(two, "web") == {
        "message": "hello op-downstream-2 in b",
        "replicaCount": 2,
    }
    assert deployed_values(three, "web") == {
        "message": f"us us {IDS['downstream-3']}",
        "replicaCount": 1,
    }
    configmap = json.loads(kubectl(two.kubeconfig, "get", "cm", "web", "-n", NS, "-o", "json"))
    assert configmap["data"]["message"] == "hello op-downstream-2 in b"  # the rendered object
    assert set(revisions(downstream).values()) == {1}


def test_a_label_change_upgrades_only_that_cluster(
    operator: Operator, downstream: list[BedCluster]
) -> None:
    before = revisions(downstream)
    relabel(operator, "downstream-2", zone="b2")

    eventually(
        "downstream-2's web upgraded",
        lambda: revisions(downstream).get(("downstream-2", "web")) == 2,
    )
    operator.settled("Deployed")

    after = revisions(downstream)
    assert {k: v for k, v in after.items() if after[k] != before[k]} == {("downstream-2", "web"): 2}
    assert deployed_values(downstream[1], "web")["message"] == "hello op-downstream-2 in b2"


def test_an_unknown_variable_fails_only_that_clusters_rows(
    operator: Operator, downstream: list[BedCluster]
) -> None:
    before = revisions(downstream)
    relabel(operator, "downstream-1", zone=None)

    def failed() -> dict[str, Any] | None:
        status = operator.status()
        row = rows(status).get((IDS["downstream-1"], "web"))
        return (
            status if row and row["status"] == "Failed" and status["phase"] == "Degraded" else None
        )

    status = eventually("downstream-1's web row failed", failed)

    found = rows(status)
    message = found[(IDS["downstream-1"], "web")]["message"]
    assert "chart web" in message and "values.inline.message" in message
    assert ".Cluster.labels.zone" in message and "op-downstream-1" in message
    assert found[(IDS["downstream-1"], "web")]["action"] == "invalid"
    others = {k: r["status"] for k, r in found.items() if k != (IDS["downstream-1"], "web")}
    assert others == {
        (IDS[c], name): "Deployed"
        for c in IDS
        for name in ("web", "keep", "old")
        if (c, name) != ("downstream-1", "web")
    }
    assert revisions(downstream) == before  # nothing lost, nothing rewritten

    relabel(operator, "downstream-1")  # the label is back: the same values, no upgrade
    operator.settled("Deployed")
    assert revisions(downstream) == before


DRY_RUN_ACTIONS = {  # what the dry run of `edited_charts` plans, and apply then does
    **{(IDS[c], "web"): "upgrade" for c in IDS},
    **{(IDS[c], "keep"): "nothing" for c in IDS},
    **{(IDS[c], "old"): "uninstall" for c in IDS},
    **{(IDS[c], "extra"): "install" for c in IDS},
    **{(IDS[c], "taken"): "install" for c in ("downstream-2", "downstream-3")},
    (IDS["downstream-1"], "taken"): "conflict",
}


def edited_charts(repo: str) -> list[dict[str, Any]]:
    return [
        web(repo, version="0.2.0"),  # upgrade with a version change
        chart("keep", repo),  # no-op
        chart("extra", repo),  # install; `old` removed: uninstall
        chart("taken", repo),  # conflict on downstream-1, install elsewhere
    ]


def assert_dry_run_rows(status: dict[str, Any]) -> None:
    """Every row Planned with its action and why; the Stack stalled, saying it wrote nothing."""
    planned = {k: (r["status"], r["action"]) for k, r in rows(status).items()}
    assert planned == {k: ("Planned", a) for k, a in DRY_RUN_ACTIONS.items()}
    messages = {k: r["message"] for k, r in rows(status).items()}
    assert messages[(IDS["downstream-1"], "web")] == "would upgrade: chart version 0.1.0 -> 0.2.0"
    assert messages[(IDS["downstream-1"], "extra")] == "would install version 0.1.0: not installed"
    assert "Herd will not take it over" in messages[(IDS["downstream-1"], "taken")]
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert conditions == {"Ready": "False", "Reconciling": "False", "Stalled": "True"}
    assert status["message"].startswith("Dry run (nothing written): ")


def assert_applied_as_planned(
    status: dict[str, Any], before: dict[tuple[str, str], int], after: dict[tuple[str, str], int]
) -> None:
    """Each release's revision moved as its planned action says, and its row names it."""
    applied = {k: r["action"] for k, r in rows(status).items()}
    for (cluster_id, name), action in DRY_RUN_ACTIONS.items():
        cluster = next(c for c, i in IDS.items() if i == cluster_id)
        was, now = before.get((cluster, name)), after.get((cluster, name))
        match action:
            case "upgrade":
                assert now == (was or 0) + 1, (cluster, name)
            case "nothing" | "conflict":
                assert now == was, (cluster, name)
            case "install":
                assert (was, now) == (None, 1), (cluster, name)
            case "uninstall":
                assert now is None, (cluster, name)
        if action != "uninstall":  # uninstalled releases leave the rows
            assert applied[(cluster_id, name)] == action, (cluster, name)
    assert rows(status)[(IDS["downstream-1"], "taken")]["status"] == "Failed"


def test_dry_run_says_what_apply_then_does_and_writes_nothing(
    operator: Operator, downstream: list[BedCluster], chart_repo_url: str
) -> None:
    one = downstream[0]
    helm(
        one,
        *("install", "taken", "app", "--repo", chart_repo_url, "--version", "0.1.0", "-n", NS),
    )  # a release another tool owns, on one cluster only
    before = revisions(downstream)
    edited = edited_charts(chart_repo_url)
    operator.apply(body(edited, mode="DryRun"))

    status = operator.settled("DryRun")

    assert_dry_run_rows(status)
    time.sleep(2)  # and nothing written after the status either
    assert revisions(downstream) == before

    operator.apply(body(edited))  # mode back to Apply
    status = operator.settled("Degraded")  # the conflict stays a failure

    assert_applied_as_planned(status, before, revisions(downstream))

    kubectl(
        operator.management.kubeconfig,
        *("delete", "stack", STACK, "-n", "default", "--wait=true", "--timeout=120s"),
    )
    eventually(
        "the Stack's releases removed",
        lambda: set(revisions(downstream)) == {("downstream-1", "taken")},
    )
    helm(one, "uninstall", "taken", "-n", NS)


def ci_clusters(downstream: list[BedCluster], ns: str) -> list[str]:
    """`herd` options: the three clusters as one, two, three; zones a and b, three has none."""
    one, two, three = downstream
    return [
        *("--kubeconfig", f"{one.kubeconfig}=one"),
        *("--kubeconfig", f"{two.kubeconfig}=two"),
        *("--kubeconfig", f"{three.kubeconfig}=three"),
        *("--label", f"one:herd.test/cv={ns}"),
        *("--label", "one:zone=a"),
        *("--label", f"two:herd.test/cv={ns}"),
        *("--label", "two:zone=b"),
        *("--label", f"three:herd.test/cv={ns}"),  # no zone label
    ]


def write_ci_stack(stack: Path, ns: str, repo: str, **extra: Any) -> None:
    """`web` with a templated message per cluster and 3 replicas on `two`, into `stack`."""
    values = {
        "templated": True,
        "inline": {"message": "{{ .Cluster.name }}-{{ .Cluster.labels.zone }}"},
        "clusters": [{"clusterIds": ["two"], "inline": {"replicaCount": 3}}],
    }
    spec = {
        "targets": {"selector": {"matchLabels": {"herd.test/cv": ns}}},
        "charts": [
            {
                "name": "web",
                "chart": "app",
                "repo": repo,
                "version": "0.1.0",
                "namespace": ns,
                "values": values,
            }
        ],
    }
    document = {
        "apiVersion": "herd.suse.com/v1",
        "kind": "Stack",
        "metadata": {"name": ns, "namespace": "ci"},
        "spec": {**spec, **extra},
    }
    stack.write_text(yaml.safe_dump(document))


def test_herd_plan_covers_dry_run_and_per_cluster_values_from_ci(
    downstream: list[BedCluster], chart_repo_url: str, tmp_path: Path
) -> None:
    ns = unique("cli-cv")
    one, two, three = downstream
    clusters = ci_clusters(downstream, ns)
    stack = tmp_path / "stack.yaml"
    write_ci_stack(stack, ns, chart_repo_url, mode="DryRun")
    try:
        dry = herd("apply", "-f", stack, *clusters, "-o", "json")  # DryRun: apply only plans

        assert dry.returncode == 1, dry.stdout + dry.stderr  # three cannot render: invalid
        assert "spec.mode is DryRun" in dry.stderr
        planned = {r["cluster"]: r for r in json.loads(dry.stdout)["releases"]}
        assert {c: r["action"] for c, r in planned.items()} == {
            "one": "install",
            "two": "install",
            "three": "invalid",
        }
        assert ".Cluster.labels.zone" in planned["three"]["reason"]
        assert all(helm_releases(c, ns) == {} for c in downstream)  # no helm write

        write_ci_stack(stack, ns, chart_repo_url)
        plan = herd("plan", "-f", stack, *clusters, "-o", "json")
        assert json.loads(plan.stdout)["releases"] == json.loads(dry.stdout)["releases"]
        applied = herd("apply", "-f", stack, *clusters)

        assert applied.returncode == 1, applied.stdout + applied.stderr  # three failed
        assert deployed_values(one, "web", ns) == {"message": "one-a"}
        assert deployed_values(two, "web", ns) == {"message": "two-b", "replicaCount": 3}
        assert helm_releases(three, ns) == {}
    finally:
        done = herd("delete", "-f", stack, *clusters)
        assert done.returncode == 0, done.stdout + done.stderr
