"""Drift correction of an admin Stack never applies a release Secret somebody forged.

helm's release Secret (`sh.helm.release.v1.<name>.v<rev>`) is data whoever may write the
release's namespace controls, and an admin Stack's corrections write as the kubeconfig's
identity. Here a namespace user (a real ServiceAccount whose Role covers Secrets only, in
two namespaces) forges while the operator is down (a restart, a new leader: every manifest
read is forgotten): it overwrites the revision Herd wrote with a manifest adding a
ClusterRoleBinding to cluster-admin for itself, and adds a newer revision claiming a
ConfigMap in a namespace it cannot write. The operator runs with open tenancy (its Stacks
are admin's), Correct mode, a 2 s interval: neither forgery is applied, both rows say so,
and the genuine drift of the release nobody forged is corrected.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.testbed.controlplane import Cluster as BedCluster
from e2e.testbed.forgery import forge_release
from e2e.testbed.helpers import eventually, kubectl, kubectl_run
from e2e.testbed.operator_run import Operator, run_operator
from herd.plan.ownership import NOT_HERDS


@pytest.fixture(scope="module")
def cluster(downstream: list[BedCluster]) -> BedCluster:
    return downstream[0]


FLEET_NS = "fleet-drift-admin"
IDS = {"downstream-1": "c-m-drifta001"}
ADMIN_STACK = "drift-admin"
INTERVAL = "2s"
VICTIM, NEWER, HONEST = "victim", "newer", "honest"  # release = namespace suffix
FORGER_NS = "adm-victim"
FORGER = f"system:serviceaccount:{FORGER_NS}:forger"
GRABBED = "drift-forged-admin"  # the ClusterRoleBinding a forger wants


def test_a_namespace_user_cannot_make_herd_apply_a_forged_release_as_admin(
    management: BedCluster,
    cluster: BedCluster,
    chart_repo_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Overwriting the revision Herd wrote (a ClusterRoleBinding to cluster-admin added)
    and adding a newer revision (a ConfigMap in another namespace): in Correct mode
    neither is ever applied and both rows say why, while the genuine drift of the release
    nobody forged is still corrected."""
    config = cluster.kubeconfig
    _namespace_user(config, [f"adm-{VICTIM}", f"adm-{NEWER}"])
    _assert_cannot_escalate_alone(cluster)
    grab, planted = _forged_manifests()
    work = tmp_path_factory.mktemp("drift-admin")
    try:
        with _admin_operator(management, cluster, work / "one") as admin:
            admin.apply(_admin_stack(chart_repo_url))
            admin.settled("Deployed")
        # Down (a restart, a new leader: every manifest read is forgotten), the forgeries.
        forge_release(config, f"adm-{VICTIM}", VICTIM, yaml.safe_dump(grab), FORGER, new=False)
        forge_release(config, f"adm-{NEWER}", NEWER, yaml.safe_dump(planted), FORGER)
        kubectl(config, "delete", "configmap", HONEST, "-n", f"adm-{HONEST}")  # genuine drift
        with _admin_operator(management, cluster, work / "two") as admin:
            _assert_forgeries_refused_and_drift_corrected(admin, cluster)
            kubectl(
                management.kubeconfig,
                "delete",
                "stack",
                ADMIN_STACK,
                "-n",
                "default",
                "--wait=false",
            )
            eventually("the admin Stack gone", lambda: (not admin.stack()) or None, 90)
    finally:
        kubectl(config, "delete", "clusterrolebinding", GRABBED, check=False)
        for name in (VICTIM, NEWER, HONEST):
            kubectl(config, "delete", "namespace", f"adm-{name}", "--wait=false", check=False)


# -- helpers ---------------------------------------------------------------------------------


def _assert_cannot_escalate_alone(cluster: BedCluster) -> None:
    """The forger may not bind itself to cluster-admin by itself."""
    escalate = ["create", "clusterrolebinding", GRABBED, "--clusterrole=cluster-admin"]
    own = kubectl_run(cluster, *escalate, f"--serviceaccount={FORGER_NS}:forger", f"--as={FORGER}")
    assert own.returncode != 0 and "forbidden" in own.stderr.lower(), own


def _forged_manifests() -> tuple[dict[str, Any], dict[str, Any]]:
    """What the forger wants applied: a ClusterRoleBinding to cluster-admin for itself, and a
    ConfigMap in a namespace it cannot write."""
    planted = {"apiVersion": "v1", "kind": "ConfigMap", "data": {"k": "v"}}
    planted["metadata"] = {"name": "planted", "namespace": f"adm-{HONEST}"}
    grab = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": GRABBED},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": "forger", "namespace": FORGER_NS}],
    }  # fmt: skip
    return grab, planted


def _assert_forgeries_refused_and_drift_corrected(admin: Operator, cluster: BedCluster) -> None:
    config = cluster.kubeconfig
    honest = ["get", "configmap", HONEST, "-n", f"adm-{HONEST}"]
    eventually("the genuine drift corrected", lambda: kubectl(config, *honest, check=False), 60)

    def refused() -> dict[str, dict[str, Any]] | None:
        rows = {r["chartName"]: r.get("drift") or {} for r in admin.status()["deployments"]}
        said = all(NOT_HERDS in rows[n].get("message", "") for n in (VICTIM, NEWER))
        return rows if said else None

    rows = eventually("both forgeries not corrected, said so", refused, 30)
    time.sleep(6)  # three more intervals: still nothing written
    assert not rows[HONEST].get("message"), rows
    assert kubectl_run(cluster, "get", "clusterrolebinding", GRABBED).returncode != 0
    out = kubectl(config, "get", "configmap", "planted", "-n", f"adm-{HONEST}", check=False)
    assert not out, out
    assert "DriftCorrected" in [e["reason"] for e in admin.events()]


def _namespace_user(config: Path, namespaces: list[str]) -> None:
    """ServiceAccount `forger` with a Role on Secrets only, in each of `namespaces` (one
    kubectl apply: the namespaces first)."""
    docs: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
        for ns in [*namespaces, f"adm-{HONEST}"]
    ]
    docs.append(
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": "forger", "namespace": FORGER_NS}}
    )  # fmt: skip
    verbs = ["get", "list", "watch", "create", "update", "patch", "delete"]
    for ns in namespaces:
        docs.append(
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
             "metadata": {"name": "secrets", "namespace": ns},
             "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": verbs}]}
        )  # fmt: skip
        docs.append(
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
             "metadata": {"name": "forger", "namespace": ns},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                         "name": "secrets"},
             "subjects": [{"kind": "ServiceAccount", "name": "forger",
                           "namespace": FORGER_NS}]}
        )  # fmt: skip
    kubectl(config, "apply", "-f", "-", stdin=yaml.safe_dump_all(docs))


def _admin_stack(repo: str) -> dict[str, Any]:
    charts = [
        {"name": n, "chart": "app", "repo": repo, "version": "0.1.0", "namespace": f"adm-{n}"}
        for n in (VICTIM, NEWER, HONEST)
    ]  # fmt: skip
    return {
        "apiVersion": "herd.suse.com/v1",
        "kind": "Stack",
        "metadata": {
            "name": ADMIN_STACK,
            "namespace": "default",
        },
        "spec": {
            "targets": {"clusterIds": [IDS["downstream-1"]]},
            "charts": charts,
            "drift": {"interval": INTERVAL, "mode": "Correct"},
        },
    }


@contextlib.contextmanager
def _admin_operator(management: BedCluster, cluster: BedCluster, work: Path) -> Iterator[Operator]:
    """`herd operator` with open tenancy: its Stacks are admin's (helm and drift as the
    kubeconfig's identity)."""
    work.mkdir(parents=True)
    with run_operator(
        management,
        [cluster],
        work,
        fleet_ns=FLEET_NS,
        ids=IDS,
        labels={"downstream-1": {}},
        # A long resync: repairs must come from the drift interval, not a resync.
        env={"HERD_TENANCY": "open", "HERD_RESYNC_SECONDS": "120"},
    ) as running:
        running.name = ADMIN_STACK
        yield running
