"""Ownership and hooks under attack, through the real controller with install/'s RBAC.

Issue 20's attacks, each done as a tenant would: a tenant (`so-t`, granted namespaces
`so-t-*` on both downstream clusters) plants releases with hostile hooks (a
ClusterRoleBinding of its own downstream identity to `cluster-admin`) and labels them for a
Stack, or writes a newer revision of a real release. Herd must uninstall only the releases
its ownership record holds (a ConfigMap in herd-system on the management cluster), as the
Stack's identity, skip hooks it cannot trust, render upgrades as upgrades, and leave a
cluster the Stack is no longer granted alone. Every helm call of the controller is logged
(`e2e.testbed.herd_controller`'s HERD_HELM wrapper), so "no helm call there" is checked.

Fixture charts: `e2e/charts-tenancy/` (`tenant-probe`, `hooked`), served by this module's
own chart repository.
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

from e2e.testbed import helpers, rancher
from e2e.testbed.chartrepo import ChartRepo, helm_binary, helm_env, package_charts
from e2e.testbed.controlplane import Cluster as BedCluster
from e2e.testbed.helpers import eventually, kubectl, kubectl_run
from e2e.testbed.herd_controller import Controller, settled_stack, tenant_controller
from e2e.testbed.tenant_identity import Identity, bound_identity
from herd.plan.ownership import DIGEST_CHARS

CHARTS = Path(__file__).resolve().parent / "charts-tenancy"
RANCHER_NS = "fleet-secown"
ADMIN_NS = "herd-system"
TENANT, WITHDRAWN = "so-t", "so-w"
ONE, TWO = "c-m-so000001", "c-m-so000002"
WAIT = 150.0
STACK_LABEL = "herd.suse.com/stack"


def grant(name: str, clusters: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "herd.suse.com/v1",
        "kind": "ClusterGrant",
        "metadata": {"name": name},
        "spec": {
            "namespaces": [name],
            "clusters": {"clusterIds": clusters},
            "targetNamespaces": [f"{name}-*"],
        },
    }


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChartRepo]:
    served = package_charts(
        [CHARTS / "tenant-probe", CHARTS / "hooked"], tmp_path_factory.mktemp("secown-charts")
    )
    with ChartRepo.serve(served) as running:
        yield running


@pytest.fixture(scope="module")
def clusters(downstream: list[BedCluster]) -> dict[str, BedCluster]:
    return {ONE: downstream[0], TWO: downstream[1]}


@pytest.fixture(scope="module")
def controller(
    management: BedCluster,
    clusters: dict[str, BedCluster],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Controller]:
    with tenant_controller(
        management.kubeconfig,
        tmp_path_factory.mktemp("secown-controller"),
        rancher_ns=RANCHER_NS,
        clusters=[
            rancher.RancherCluster("so-one", ONE, clusters[ONE].kubeconfig),
            rancher.RancherCluster("so-two", TWO, clusters[TWO].kubeconfig),
        ],
        grants=[grant(TENANT, [ONE, TWO]), grant(WITHDRAWN, [ONE, TWO])],
        settings={"HERD_RESYNC_SECONDS": "15"},
    ) as running:
        yield running


# -- helpers -----------------------------------------------------------------------------


def stack(
    namespace: str,
    name: str,
    repo: ChartRepo,
    chart: str,
    release_ns: str,
    targets: list[str],
    values: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "apiVersion": "herd.suse.com/v1",
        "kind": "Stack",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "targets": {"clusterIds": targets},
            "charts": [
                {
                    "name": "app",
                    "chart": chart,
                    "repo": repo.url,
                    "version": "0.1.0",
                    "namespace": release_ns,
                    "releaseName": name,
                    "values": {"inline": values or {}},
                }
            ],
        },
    }


def apply(management: BedCluster, body: dict[str, Any]) -> None:
    kubectl(management.kubeconfig, "apply", "-f", "-", stdin=yaml.safe_dump(body))


def get_stack(management: BedCluster, namespace: str, name: str) -> dict[str, Any] | None:
    return helpers.get_stack(management, namespace, name, check=False) or None


def settled(management: BedCluster, namespace: str, name: str) -> dict[str, Any]:
    """The Stack's status once its current generation's pass has ended."""
    return settled_stack(management, namespace, name, WAIT)


def row(status: dict[str, Any], cluster: str, release: str) -> dict[str, Any]:
    for found in status.get("deployments") or []:
        if found["clusterId"] == cluster and found.get("releaseName") == release:
            return dict(found)
    return {}


def delete_stack(management: BedCluster, namespace: str, name: str) -> None:
    kubectl(management.kubeconfig, "delete", "stack", name, "-n", namespace, "--wait=false")
    eventually(
        f"Stack {namespace}/{name} to finish deleting",
        lambda: get_stack(management, namespace, name) is None,
        WAIT,
    )


def reconcile(management: BedCluster, namespace: str, name: str) -> None:
    """Wake the Stack's keeper now (a new value of herd.suse.com/reconcile-at)."""
    kubectl(
        management.kubeconfig, "annotate", "stack", name, "-n", namespace, "--overwrite",
        f"herd.suse.com/reconcile-at={time.time():.3f}",
    )  # fmt: skip


def helm(cluster: BedCluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [helm_binary(), *args, "--kubeconfig", str(cluster.kubeconfig)],
        env=helm_env(cluster.kubeconfig.parent / "secown-helm"),
        check=False,
        capture_output=True,
        text=True,
        timeout=180,
    )


def plant(
    cluster: BedCluster,
    repo: ChartRepo,
    who: Identity,
    verb: str,
    release: str,
    namespace: str,
    **values: Any,
) -> None:
    """`helm install|upgrade` of the `hooked` chart as the tenant's own identity."""
    sets = [f"--set-json=subject={json.dumps(who.values())}"]
    sets += [f"--set-json={k}={json.dumps(v)}" for k, v in values.items()]
    done = helm(
        cluster, verb, release, "hooked", f"--repo={repo.url}", "--version=0.1.0",
        f"--namespace={namespace}", *sets, *who.helm_flags(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def release_secret(cluster: BedCluster, namespace: str, name: str, revision: int) -> dict[str, Any]:
    done = kubectl_run(
        cluster, "get", "secret", f"sh.helm.release.v1.{name}.v{revision}", "-n", namespace,
        "-o", "json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    found: dict[str, Any] = json.loads(done.stdout)
    return found


def herd_labels(secret: dict[str, Any]) -> dict[str, str]:
    labels = secret["metadata"].get("labels") or {}
    return {k: v for k, v in labels.items() if k.startswith("herd.suse.com/")}


def forge_labels(
    cluster: BedCluster, who: Identity, namespace: str, secret: str, labels: dict[str, str]
) -> None:
    """Label a release Secret as the tenant (who may write Secrets in its namespace)."""
    pairs = [f"{k}={v}" for k, v in labels.items()]
    done = kubectl_run(
        cluster, "label", "secret", secret, "-n", namespace, "--overwrite", *pairs,
        *who.kubectl_flags(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def release_status(cluster: BedCluster, namespace: str, name: str) -> str | None:
    done = helm(cluster, "status", name, f"--namespace={namespace}", "--output=json")
    if done.returncode:
        assert "not found" in done.stderr, done.stderr
        return None
    status: str = json.loads(done.stdout)["info"]["status"]
    return status


def binding_exists(cluster: BedCluster, name: str) -> bool:
    return kubectl_run(cluster, "get", "clusterrolebinding", name).returncode == 0


def uninstalls(controller: Controller, release: str, since: float) -> list[tuple[str, ...]]:
    return [
        call.args
        for call in controller.helm_calls(since)
        if call.verb == "uninstall" and release in call.args
    ]


def record(management: BedCluster, uid: str) -> dict[str, Any] | None:
    out = kubectl(
        management.kubeconfig, "get", "configmap", f"herd-owned-{uid}", "-n", ADMIN_NS,
        "-o", "json", check=False,
    )  # fmt: skip
    if not out.strip():
        return None
    data = json.loads(out).get("data") or {}
    found: dict[str, Any] = json.loads(data.get("record") or "{}")
    return found


# -- the attacks -------------------------------------------------------------------------


def test_a_forged_pre_delete_hook_never_runs_at_deletion(
    controller: Controller,
    management: BedCluster,
    clusters: dict[str, BedCluster],
    repo: ChartRepo,
) -> None:
    one, ns = clusters[ONE], "so-t-del"
    apply(management, stack(TENANT, "del1", repo, "tenant-probe", ns, [ONE]))
    assert row(settled(management, TENANT, "del1"), ONE, "del1")["status"] == "Deployed"
    uid = (get_stack(management, TENANT, "del1") or {})["metadata"]["uid"]
    owned = record(management, uid)
    assert owned is not None and list(owned["releases"][ONE]) == [f"{ns}/del1"], owned
    revision, digest = owned["releases"][ONE][f"{ns}/del1"]  # and its manifest's digest
    assert revision == 1 and len(digest) == DIGEST_CHARS, owned

    # The attack: the tenant's own identity installs a chart whose only object is a
    # pre-delete hook (helm does not create it at install), then labels it for the Stack.
    who = bound_identity(one, ns, TENANT)
    plant(one, repo, who, "install", "evil", ns, preDelete=True)
    assert not binding_exists(one, "evil-pre-delete")
    real = herd_labels(release_secret(one, ns, "del1", 1))
    assert real[STACK_LABEL] == f"{TENANT}.del1"
    forge_labels(one, who, ns, "sh.helm.release.v1.evil.v1", real)

    started = time.time()
    delete_stack(management, TENANT, "del1")
    assert release_status(one, ns, "del1") is None
    assert release_status(one, ns, "evil") == "deployed"  # untouched
    assert not binding_exists(one, "evil-pre-delete")
    assert uninstalls(controller, "evil", started) == []
    # The Stack's own release went as the tenant's identity, never as the admin's.
    (call,) = uninstalls(controller, "del1", started)
    assert any(arg.startswith("--kube-as-user=") for arg in call), call
    assert record(management, uid) is None


def test_an_upgrade_only_object_is_refused_before_helm_runs(
    controller: Controller,
    management: BedCluster,
    clusters: dict[str, BedCluster],
    repo: ChartRepo,
) -> None:
    one, ns = clusters[ONE], "so-t-upg"
    attacker = {"kind": "User", "name": "so-t-attacker", "namespace": ""}
    values = {"configmap": True, "onUpgrade": True, "subject": attacker}
    apply(management, stack(TENANT, "upg", repo, "hooked", ns, [ONE], values))
    assert row(settled(management, TENANT, "upg"), ONE, "upg")["status"] == "Deployed"

    started = time.time()
    apply(management, stack(TENANT, "upg", repo, "hooked", ns, [ONE], {**values, "bump": 1}))
    found = row(settled(management, TENANT, "upg"), ONE, "upg")
    assert found["status"] == "Failed", found
    assert "ClusterRoleBinding upg-on-upgrade (cluster-scoped)" in found["message"], found
    assert "not granted" in found["message"]
    # Refused by the render check: helm never ran the upgrade.
    upgrades = [
        c for c in controller.helm_calls(started) if c.verb == "upgrade" and "upg" in c.args
    ]
    assert upgrades == []
    assert not binding_exists(one, "upg-on-upgrade")
    assert (
        json.loads(helm(one, "status", "upg", f"--namespace={ns}", "-o", "json").stdout)["version"]
        == 1
    )
    delete_stack(management, TENANT, "upg")


def test_forged_releases_claiming_an_admin_and_a_tenant_stack_are_left_alone(
    controller: Controller,
    management: BedCluster,
    clusters: dict[str, BedCluster],
    repo: ChartRepo,
) -> None:
    one, ns = clusters[ONE], "so-t-claims"
    apply(management, stack(ADMIN_NS, "so-adm", repo, "tenant-probe", "so-adm-apps", [ONE]))
    apply(management, stack(TENANT, "so-ten", repo, "tenant-probe", ns, [ONE]))
    settled(management, ADMIN_NS, "so-adm")
    settled(management, TENANT, "so-ten")
    who = bound_identity(one, ns, TENANT)
    claims = {"forged-adm": ("so-adm-apps", "so-adm"), "forged-ten": (ns, "so-ten")}
    for forged, (real_ns, real_name) in claims.items():
        plant(one, repo, who, "install", forged, ns, preDelete=True)
        labels = herd_labels(release_secret(one, real_ns, real_name, 1))
        forge_labels(one, who, ns, f"sh.helm.release.v1.{forged}.v1", labels)

    started = time.time()
    for namespace, name, forged in (
        (ADMIN_NS, "so-adm", "forged-adm"),
        (TENANT, "so-ten", "forged-ten"),
    ):
        reconcile(management, namespace, name)
        # The next pass sees the forged release, reports it, and leaves it in place.
        kept = eventually(
            f"Stack {namespace}/{name} to report {forged}",
            lambda n=namespace, s=name, f=forged: row(
                (get_stack(management, n, s) or {}).get("status") or {}, ONE, f
            ),
            WAIT,
        )
        assert "left in place" in kept["message"], kept
        assert "no record" in kept["message"]
    for namespace, name in ((ADMIN_NS, "so-adm"), (TENANT, "so-ten")):
        delete_stack(management, namespace, name)
    for forged in claims:
        assert release_status(one, ns, forged) == "deployed"
        assert not binding_exists(one, f"{forged}-pre-delete")
        assert uninstalls(controller, forged, started) == []
    assert release_status(one, "so-adm-apps", "so-adm") is None
    assert release_status(one, ns, "so-ten") is None


def test_a_forged_newer_revision_is_uninstalled_without_its_hooks(
    controller: Controller,
    management: BedCluster,
    clusters: dict[str, BedCluster],
    repo: ChartRepo,
) -> None:
    one, ns = clusters[ONE], "so-t-pin"
    # A tenant Stack and an admin Stack, both with releases in a namespace the tenant
    # may write (the admin's would run its hooks as the kubeconfig's admin).
    for namespace, name in ((TENANT, "pin-ten"), (ADMIN_NS, "pin-adm")):
        apply(management, stack(namespace, name, repo, "hooked", ns, [ONE], {"configmap": True}))
    for namespace, name in ((TENANT, "pin-ten"), (ADMIN_NS, "pin-adm")):
        assert row(settled(management, namespace, name), ONE, name)["status"] == "Deployed"
    who = bound_identity(one, ns, TENANT)
    for name in ("pin-ten", "pin-adm"):
        labels = herd_labels(release_secret(one, ns, name, 1))
        plant(one, repo, who, "upgrade", name, ns, configmap=True, preDelete=True)
        forge_labels(one, who, ns, f"sh.helm.release.v1.{name}.v2", labels)
    started = time.time()
    for namespace, name in ((TENANT, "pin-ten"), (ADMIN_NS, "pin-adm")):
        delete_stack(management, namespace, name)
        assert release_status(one, ns, name) is None
        (call,) = uninstalls(controller, name, started)
        assert "--no-hooks" in call, call
        assert not binding_exists(one, f"{name}-pre-delete")


def test_a_cluster_no_longer_granted_is_orphaned_not_cleaned_as_admin(
    controller: Controller,
    management: BedCluster,
    clusters: dict[str, BedCluster],
    repo: ChartRepo,
) -> None:
    ns = "so-w-apps"
    apply(management, stack(WITHDRAWN, "wd", repo, "tenant-probe", ns, [ONE, TWO]))
    found = settled(management, WITHDRAWN, "wd")
    assert {row(found, c, "wd").get("status") for c in (ONE, TWO)} == {"Deployed"}, found
    kubectl(
        management.kubeconfig, "apply", "-f", "-", stdin=yaml.safe_dump(grant(WITHDRAWN, [ONE]))
    )
    eventually(
        "the withdrawn cluster to show as not granted",
        lambda: (
            row((get_stack(management, WITHDRAWN, "wd") or {}).get("status") or {}, TWO, "wd").get(
                "status"
            )
            == "NotGranted"
        ),
        WAIT,
    )
    started = time.time()
    delete_stack(management, WITHDRAWN, "wd")
    assert release_status(clusters[ONE], ns, "wd") is None
    assert release_status(clusters[TWO], ns, "wd") == "deployed"  # orphaned, untouched
    # No helm call at all reached the cluster that is not granted any more.
    touched = [c.args for c in controller.helm_calls(started) if any(TWO in a for a in c.args)]
    assert touched == []
    events = json.loads(
        kubectl(management.kubeconfig, "get", "events", "-n", WITHDRAWN, "-o", "json")
    )["items"]
    reported = [e["message"] for e in events if e.get("reason") == "ClusterNotGranted"]
    assert any(TWO in message for message in reported), reported
