"""install/: the plain manifests and Herd's own Helm chart are accepted by an API server."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

from e2e.testbed.chartrepo import helm_binary
from e2e.testbed.controlplane import Cluster as BedCluster

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "install" / "helm" / "herd"
HELM = helm_binary()


def run(*argv: str, stdin: str | None = None) -> str:
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def ensure_namespaces(kubeconfig: str, *names: str) -> None:
    for name in names:  # "already exists" is fine
        subprocess.run(
            ["kubectl", "--kubeconfig", kubeconfig, "create", "namespace", name],
            capture_output=True,
            check=False,
        )


def test_chart_lints_and_renders_objects_the_api_server_accepts(management: BedCluster) -> None:
    run(HELM, "lint", "--strict", str(CHART))
    # With the answers Rancher's form gives (questions.yaml): strings, lists as "a,b".
    run(HELM, "lint", "--strict", str(CHART), "--set", r"rancherNamespaces=fleet-default\,x",
        "--set", "tenancy=open", "--set", "shard=gpu")  # fmt: skip
    rendered = run(
        HELM,
        "template",
        "herd",
        str(CHART),
        "-n",
        "herd-system",
        "--include-crds",
        "--set",
        "rancherNamespaces={fleet-default}",
    )
    kubeconfig = str(management.kubeconfig)
    ensure_namespaces(kubeconfig, "herd-system", "fleet-default")
    out = run(
        "kubectl",
        "--kubeconfig",
        kubeconfig,
        "apply",
        "--dry-run=server",
        "-f",
        "-",
        stdin=rendered,
    )
    for kind in ("customresourcedefinition", "deployment", "clusterrole", "role", "service"):
        assert kind in out, out


def test_plain_manifests_apply(management: BedCluster) -> None:
    kubeconfig = str(management.kubeconfig)
    run("kubectl", "--kubeconfig", kubeconfig, "apply", "-f", str(ROOT / "crds"))
    ensure_namespaces(kubeconfig, "fleet-default", "fleet-local")
    out = run(
        "kubectl",
        "--kubeconfig",
        kubeconfig,
        "apply",
        "--dry-run=server",
        "-f",
        str(ROOT / "install"),
    )
    assert "deployment.apps/herd-controller" in out


def render(*values: str) -> list[dict[str, Any]]:
    args = [a for value in values for a in ("--set", value)]
    out = run(HELM, "template", "herd", str(CHART), "-n", "herd-system", *args)
    return [d for d in yaml.safe_load_all(out) if d]


def controller(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    return deployment


def env_of(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value") for e in container["env"]}


def test_both_installs_run_a_leader_and_a_standby_with_a_grace_period() -> None:
    plain = [d for f in sorted((ROOT / "install").glob("*.yaml"))
             for d in yaml.safe_load_all(f.read_text()) if d]  # fmt: skip
    for docs in (plain, render()):
        deployment = controller(docs)
        spec = deployment["spec"]["template"]["spec"]
        env = env_of(deployment)
        assert deployment["spec"]["replicas"] == 2
        assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
        # Running helm gets the grace period minus the time for the final status writes.
        assert float(env["HERD_SHUTDOWN_SECONDS"]) < spec["terminationGracePeriodSeconds"]
        volumes = {v["name"]: v for v in spec["volumes"]}
        (container,) = spec["containers"]
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        # The work directory is inside a memory-backed mount, not the mount itself: its
        # lock file lives beside it, and the root filesystem around the mount is read-only.
        workdir = Path(env["HERD_WORKDIR"])
        assert str(workdir.parent) in mounts, (workdir, mounts)
        assert volumes[mounts[str(workdir.parent)]]["emptyDir"]["medium"] == "Memory"
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        roles = [d for d in docs if d["kind"] == "Role"]
        assert any(
            "leases" in rule["resources"]
            and {"get", "create", "update"} <= set(rule["verbs"])
            and role["metadata"]["namespace"] == "herd-system"
            for role in roles
            for rule in role["rules"]
        ), roles


def test_both_installs_ship_herds_grafana_dashboard() -> None:
    plain = [d for f in sorted((ROOT / "install").glob("*.yaml"))
             for d in yaml.safe_load_all(f.read_text()) if d]  # fmt: skip
    for docs in (plain, render()):
        (board,) = [d for d in docs if d["metadata"]["name"] == "herd-grafana-dashboard"]
        assert board["kind"] == "ConfigMap"
        assert board["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert json.loads(board["data"]["herd.json"])["uid"] == "herd-controller"
    assert not [d for d in render("grafanaDashboard.enabled=false") if d["kind"] == "ConfigMap"]


def test_a_shard_release_adds_only_its_controller() -> None:
    docs = render("shard=gpu", "createRBAC=false", "terminationGracePeriodSeconds=120")
    assert [d["kind"] for d in docs] == ["Deployment"]
    deployment = controller(docs)
    assert deployment["metadata"]["name"] == "herd-controller-gpu"
    assert deployment["spec"]["selector"]["matchLabels"]["herd.suse.com/shard"] == "gpu"
    env = env_of(deployment)
    assert (env["HERD_SHARD"], env["HERD_SHUTDOWN_SECONDS"]) == ("gpu", "90")


def test_the_controller_account_may_hold_its_lease(management: BedCluster) -> None:
    kubeconfig = str(management.kubeconfig)
    run(
        "kubectl",
        "--kubeconfig",
        kubeconfig,
        "apply",
        "-f",
        str(ROOT / "install" / "00-namespace.yaml"),
    )
    ensure_namespaces(kubeconfig, "fleet-default", "fleet-local")
    run(
        "kubectl", "--kubeconfig", kubeconfig, "apply", "-f", str(ROOT / "install" / "10-rbac.yaml")
    )
    account = "system:serviceaccount:herd-system:herd-controller"
    for verb in ("get", "create", "update"):
        answer = run("kubectl", "--kubeconfig", kubeconfig, "auth", "can-i", verb, "leases",
                     "-n", "herd-system", "--as", account)  # fmt: skip
        assert answer.strip() == "yes", verb
    denied = subprocess.run(
        ["kubectl", "--kubeconfig", kubeconfig, "auth", "can-i", "create", "leases",
         "-n", "default", "--as", account],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert denied.stdout.strip() == "no"


def test_both_installs_impersonate_only_through_per_namespace_bindings_and_limit_egress() -> None:
    plain = [d for f in sorted((ROOT / "install").glob("*.yaml"))
             for d in yaml.safe_load_all(f.read_text()) if d]  # fmt: skip
    for docs in (plain, render()):
        roles = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ClusterRole"}
        impersonating = [
            name
            for name, role in roles.items()
            for rule in role["rules"]
            if "impersonate" in rule["verbs"]
        ]
        assert impersonating == ["herd-impersonate-serviceaccounts"]
        bound = {d["roleRef"]["name"] for d in docs if d["kind"] == "ClusterRoleBinding"}
        assert "herd-impersonate-serviceaccounts" not in bound
        secrets = [
            rule["verbs"]
            for d in docs
            if d["kind"] == "Role"
            for rule in d["rules"]
            if "secrets" in rule["resources"]
        ]
        assert secrets and all(set(verbs) == {"get", "list"} for verbs in secrets), secrets
        (policy,) = [d for d in docs if d["kind"] == "NetworkPolicy"]
        assert policy["spec"]["policyTypes"] == ["Egress"]
        blocks = [t["ipBlock"] for rule in policy["spec"]["egress"] for t in rule["to"]
                  if "ipBlock" in t]  # fmt: skip
        assert all("169.254.0.0/16" in b["except"] for b in blocks if b["cidr"] == "0.0.0.0/0")
        assert [d for d in docs if d["kind"] == "ValidatingAdmissionPolicy"]


APP_NS = "herd-app-e2e"
APP_RELEASE = "herd-app"  # beside install/'s objects (its ClusterRoles are herd-controller)
SHARED_ROLE = "herd-impersonate-serviceaccounts"  # one per cluster, whichever install made it


def test_the_chart_installs_as_an_app_with_the_forms_answers(management: BedCluster) -> None:
    """`helm install` on the management cluster, as Rancher's Apps page runs it, with
    the answers of its install form: the release is deployed and the controller
    Deployment uses the image and the Rancher namespaces given."""
    kubeconfig = str(management.kubeconfig)
    ensure_namespaces(kubeconfig, "fleet-default", "fleet-app-e2e")
    helm = (HELM, "--kubeconfig", kubeconfig, "-n", APP_NS)
    existing = subprocess.run(
        ["kubectl", "--kubeconfig", kubeconfig, "get", "clusterrole", SHARED_ROLE],
        capture_output=True, check=False,
    ).returncode == 0  # fmt: skip
    try:
        run(*helm, "install", APP_RELEASE, str(CHART), "--create-namespace",
            # install/ made the shared ClusterRole earlier in this session: the chart adopts it
            "--take-ownership",
            "--set", "image.repository=localhost/herd/herd-controller",
            "--set", "image.tag=0.1.0", "--set", "image.pullPolicy=Never",
            "--set", r"rancherNamespaces=fleet-default\,fleet-app-e2e")  # fmt: skip
        status = json.loads(run(*helm, "status", APP_RELEASE, "-o", "json"))
        assert status["info"]["status"] == "deployed", status["info"]
        deployment = json.loads(run("kubectl", "--kubeconfig", kubeconfig, "get", "deployment",
                                    "herd-controller", "-n", APP_NS, "-o", "json"))  # fmt: skip
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["image"] == "localhost/herd/herd-controller:0.1.0"
        assert container["imagePullPolicy"] == "Never"
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["HERD_RANCHER_NAMESPACES"] == "fleet-default,fleet-app-e2e"
        run("kubectl", "--kubeconfig", kubeconfig, "get", "role", f"{APP_RELEASE}-cluster-source",
            "-n", "fleet-app-e2e")  # fmt: skip
    finally:
        subprocess.run([*helm, "uninstall", APP_RELEASE, "--wait"], capture_output=True,
                       check=False)  # fmt: skip
        if existing:  # uninstall removed the adopted ClusterRole: install/'s comes back
            docs = yaml.safe_load_all((ROOT / "install" / "10-rbac.yaml").read_text())
            (role,) = [d for d in docs if d and d["metadata"]["name"] == SHARED_ROLE]
            run("kubectl", "--kubeconfig", kubeconfig, "apply", "-f", "-",
                stdin=yaml.safe_dump(role))  # fmt: skip
