"""Drift inside deployed releases (`spec.drift`), through the real operator on the test bed.

One Stack in `default` (a tenant Stack: the test ClusterGrant bounds it, so helm and every
drift read and correction run as the tenant) deploys the `app` fixture chart (Deployment,
ConfigMap, Service) to one downstream cluster with a 2 s drift interval. The tests run in
order on it: Warn reports the exact paths of five kinds of drift and writes nothing;
Correct repairs them with no new helm revision while an ignored path stays; a field another
server-side-apply manager took over comes back to helm; suspend stops corrections; with
the other four drifts ignored, replicas is restored and they are left; an immutable field
is reported, and re-created only with `force`; a release Secret rewritten to claim an
object outside the grant is not corrected there. The request bound of a no-drift check is
counted in-process (`e2e.testbed.counting`) against the same cluster.
The same forgery against an admin Stack: `e2e/test_drift_admin.py`; the CLI's drift:
`e2e/test_drift_cli.py`; stages: `e2e/test_drift_stages.py`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from e2e.testbed.controlplane import Cluster as BedCluster
from e2e.testbed.counting import RequestLog
from e2e.testbed.faults import history
from e2e.testbed.forgery import forge_release
from e2e.testbed.helpers import eventually, kubectl
from e2e.testbed.herd_controller import settled_stack
from e2e.testbed.operator_run import Operator, run_operator
from herd.api.drift import DriftIgnore
from herd.clusters.drift import DriftMemory, ReleaseCheck, check_cluster
from herd.clusters.drift_api import release_manifest
from herd.helm.crd_apply import impersonation
from herd.kube.client import api_client_from_kubeconfig
from herd.names import HELM_RELEASE_NAME
from herd.plan.drift import CORRECT, Policy
from herd.plan.ownership import NOT_HERDS, Recorded, manifest_digest
from herd.plan.releases import ReleaseKey
from herd.plan.tenancy import tenant_identity

FLEET_NS = "fleet-drift"
NS = "op-drift"
OUTSIDE = "drift-outside"  # a namespace the grant does not give (targetNamespaces op-*)
IDS = {"downstream-1": "c-m-drift0001", "downstream-2": "c-m-drift0002"}
LABELS = {"downstream-1": {"team": "drift"}, "downstream-2": {"team": "none"}}
STACK = "drifty"
APP = "web"
INTERVAL = "2s"
REPLICAS = "/spec/replicas"
IMAGE = "registry.example.com/herd/app:0.1.0"
# The other four of the five drifts, each under an ignore rule (replicas is ignored above).
IGNORE_FOUR = [
    {"paths": ["/spec/template/spec/containers/0/image"], "target": {"kind": "Deployment"}},
    {
        "paths": ["/data/message", "/metadata/labels/helm.sh~1chart"],
        "target": {"kind": "ConfigMap", "name": APP},
    },
]


@pytest.fixture(scope="module")
def operator(
    management: BedCluster,
    downstream: list[BedCluster],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Operator]:
    with run_operator(
        management,
        downstream[:2],
        tmp_path_factory.mktemp("drift-operator"),
        fleet_ns=FLEET_NS,
        ids=IDS,
        labels=LABELS,
        # A long resync: repairs must come from the drift interval, not a resync.
        env={"HERD_RESYNC_SECONDS": "120"},
    ) as running:
        running.name = STACK
        yield running
        kubectl(management.kubeconfig, "delete", "stack", STACK, "-n", "default", check=False)


@pytest.fixture(scope="module")
def cluster(downstream: list[BedCluster]) -> BedCluster:
    return downstream[0]


def body(repo: str, drift: dict[str, Any], **spec: Any) -> dict[str, Any]:
    chart = {"name": APP, "chart": "app", "repo": repo, "version": "0.1.0", "namespace": NS}
    return {
        "apiVersion": "herd.suse.com/v1",
        "kind": "Stack",
        "metadata": {"name": STACK, "namespace": "default"},
        "spec": {
            "targets": {"clusterIds": [IDS["downstream-1"]]},
            "charts": [chart],
            "drift": {"interval": INTERVAL, **drift},
            **spec,
        },
    }


def live(cluster: BedCluster, kind: str) -> dict[str, Any] | None:
    get = ["get", kind, APP, "-n", NS, "-o", "json", "--show-managed-fields"]
    out = kubectl(cluster.kubeconfig, *get, check=False)
    return json.loads(out) if out else None


def row_drift(operator: Operator) -> dict[str, Any]:
    rows = operator.status().get("deployments") or []
    return next((r.get("drift") or {} for r in rows if r["chartName"] == APP), {})


def revisions(cluster: BedCluster) -> int:
    return len(history(cluster.kubeconfig, NS, APP))


def make_drift(cluster: BedCluster, *, service: bool = True) -> None:
    """The five drifts of the issue: replicas, ConfigMap data, a deleted Service (unless
    not `service`), an image, a removed label."""
    config = cluster.kubeconfig
    kubectl(config, "scale", "deployment", APP, "-n", NS, "--replicas=3")
    patch = json.dumps({"data": {"message": "edited by hand"}})
    kubectl(config, "patch", "configmap", APP, "-n", NS, "--type=merge", "-p", patch)
    if service:
        kubectl(config, "delete", "service", APP, "-n", NS)
    kubectl(config, "set", "image", f"deployment/{APP}", "-n", NS, "app=evil.example/app:6")
    kubectl(config, "label", "configmap", APP, "-n", NS, "helm.sh/chart-")


WARNED = [
    f"Deployment/{APP}: {REPLICAS}",
    f"Deployment/{APP}: /spec/template/spec/containers/0/image",
    f"ConfigMap/{APP}: /data/message",
    f"ConfigMap/{APP}: /metadata/labels/helm.sh~1chart",
    f"Service/{APP}: missing",
]


def test_warn_reports_each_drift_by_path_and_writes_nothing(
    operator: Operator, cluster: BedCluster, chart_repo_url: str
) -> None:
    operator.apply(body(chart_repo_url, {"mode": "Warn"}))
    operator.settled("Deployed")
    eventually("a first, clean check", lambda: _drifted(operator) == 0 or None, 30)
    before = revisions(cluster)
    make_drift(cluster)
    drift = eventually("the drift reported", lambda: _entries(operator, WARNED), 30)
    posted = [e["reason"] for e in operator.events()].count("DriftDetected")
    assert posted >= 1
    assert drift["objects"] == 3 and drift.get("seenAt"), drift
    status = operator.status()
    assert status["driftedObjects"] == 3
    drifted = next(c for c in status["conditions"] if c["type"] == "Drifted")
    assert drifted["status"] == "True" and "mode Warn" in drifted["message"], drifted
    assert status["phase"] == "Deployed"  # drift is reported, not a failed release
    _more_checks(operator)  # two more checks: still nothing written
    assert live(cluster, "service") is None
    deployment = live(cluster, "deployment")
    assert deployment is not None and deployment["spec"]["replicas"] == 3
    assert revisions(cluster) == before
    reasons = [e["reason"] for e in operator.events()]
    assert "DriftCorrected" not in reasons
    assert reasons.count("DriftDetected") == posted  # checks since: de-duplicated
    assert f'herd_drifted_objects{{namespace="default",stack="{STACK}"}} 3.0' in operator.metrics()


def test_correct_repairs_within_the_interval_without_a_helm_revision(
    operator: Operator, cluster: BedCluster, chart_repo_url: str
) -> None:
    before = revisions(cluster)
    ignore = [{"paths": [REPLICAS], "target": {"kind": "Deployment"}}]
    operator.apply(body(chart_repo_url, {"mode": "Correct", "ignore": ignore}))

    eventually("the drift corrected", lambda: _repaired(cluster), 20)
    deployment = live(cluster, "deployment")
    assert deployment is not None and deployment["spec"]["replicas"] == 3  # ignored: left
    assert revisions(cluster) == before  # no helm upgrade
    drift = eventually("the row says corrected", lambda: _corrected(operator), 20)
    assert drift.get("objects", 0) == 0, drift
    assert operator.status()["driftedObjects"] == 0
    assert "DriftCorrected" in [e["reason"] for e in operator.events()]
    corrections = f'herd_drift_corrections_total{{chart="{APP}",cluster="{IDS["downstream-1"]}"}}'
    assert corrections in operator.metrics()


def test_a_field_another_manager_took_over_comes_back_to_helm(
    operator: Operator, cluster: BedCluster
) -> None:
    taken = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": APP, "namespace": NS},
        "data": {"message": "taken over"},
    }
    ssa = ["apply", "--server-side", "--field-manager=intruder", "--force-conflicts", "-f", "-"]
    kubectl(cluster.kubeconfig, *ssa, stdin=yaml.safe_dump(taken))

    def helm_owns_message() -> bool:
        config = live(cluster, "configmap")
        if config is None or config["data"].get("message") != "hello from herd":
            return False
        return "f:message" in json.dumps(_fields(config, "helm"))

    try:
        eventually("the message back, owned by helm", helm_owns_message, 20)
    except AssertionError as error:
        config = live(cluster, "configmap")
        raise AssertionError(f"{error}; row drift: {row_drift(operator)}; {config}") from None
    config = live(cluster, "configmap")
    assert config is not None and "f:message" not in json.dumps(_fields(config, "intruder"))


def test_suspend_stops_corrections_but_not_the_report(
    operator: Operator, cluster: BedCluster, chart_repo_url: str
) -> None:
    operator.apply(body(chart_repo_url, {"mode": "Correct"}, suspend=True))
    settled_stack(operator.management, "default", STACK, 60)  # the suspended spec acted on
    kubectl(cluster.kubeconfig, "delete", "service", APP, "-n", NS)
    # The replicas scaled in the Warn test, no longer ignored, is drift too.
    wanted = [f"Deployment/{APP}: {REPLICAS}", f"Service/{APP}: missing"]
    eventually("the drift reported while suspended", lambda: _entries(operator, wanted), 20)
    _more_checks(operator)
    assert live(cluster, "service") is None  # suspended: reported, not corrected
    assert (live(cluster, "deployment") or {})["spec"]["replicas"] == 3
    operator.apply(body(chart_repo_url, {"mode": "Correct"}))
    eventually("the Service back once resumed", lambda: live(cluster, "service"), 20)
    eventually(
        "the replicas back",
        lambda: (live(cluster, "deployment") or {})["spec"]["replicas"] == 1,
        20,
    )


def test_correct_restores_replicas_and_leaves_each_other_ignored_path(
    operator: Operator, cluster: BedCluster, chart_repo_url: str
) -> None:
    """The five cases' other side: replicas, ignored above, is restored once not ignored;
    the image, the ConfigMap's data and its label, each under an ignore rule, are left as
    edited and not reported. (A deleted object has no field to ignore: it is re-created.)"""
    operator.apply(body(chart_repo_url, {"mode": "Correct", "ignore": IGNORE_FOUR}))
    operator.settled("Deployed")  # passes from here on see the rules
    before = revisions(cluster)
    make_drift(cluster, service=False)

    def restored() -> dict[str, Any] | None:
        deployment = live(cluster, "deployment")
        return deployment if deployment and deployment["spec"]["replicas"] == 1 else None

    eventually("the replicas restored", restored, 20)
    time.sleep(5)  # more intervals: the ignored fields stay as edited
    deployment, configmap = live(cluster, "deployment"), live(cluster, "configmap")
    assert deployment is not None and configmap is not None
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] != IMAGE
    assert configmap["data"]["message"] == "edited by hand"
    assert "helm.sh/chart" not in (configmap["metadata"].get("labels") or {})
    assert not row_drift(operator).get("objects"), row_drift(operator)
    assert revisions(cluster) == before
    operator.apply(body(chart_repo_url, {"mode": "Correct"}))  # back to the chart's
    eventually("the ignored fields corrected once not ignored", lambda: _repaired(cluster), 20)


def test_an_immutable_field_is_reported_and_re_created_only_with_force(
    operator: Operator, cluster: BedCluster, chart_repo_url: str
) -> None:
    """The Deployment re-created by hand with another selector (immutable): Correct reports
    it and leaves it; with `force: true` it is deleted and re-created from the manifest,
    with no new helm revision."""
    operator.apply(body(chart_repo_url, {"mode": "Warn"}))  # no correction while replaced
    operator.settled("Deployed")
    before, config = revisions(cluster), cluster.kubeconfig
    made = live(cluster, "deployment")
    assert made is not None
    meta = {k: made["metadata"][k] for k in ("name", "namespace", "labels")}
    meta["annotations"] = {
        k: v for k, v in made["metadata"]["annotations"].items() if k.startswith("meta.helm.sh/")
    }
    hand = {"matchLabels": {"hand": "made"}}
    template = {
        "metadata": {"labels": hand["matchLabels"]},
        "spec": made["spec"]["template"]["spec"],
    }
    spec = {"replicas": 1, "selector": hand, "template": template}
    kubectl(config, "delete", "deployment", APP, "-n", NS)
    replaced = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": spec}
    kubectl(config, "create", "-f", "-", stdin=json.dumps(replaced))
    uid = (live(cluster, "deployment") or {})["metadata"]["uid"]

    operator.apply(body(chart_repo_url, {"mode": "Correct"}))

    def reported() -> dict[str, Any] | None:
        drift = row_drift(operator)
        selector = any(
            e.startswith(f"Deployment/{APP}: /spec/selector") for e in drift.get("entries", [])
        )
        return drift if selector and "immutable field" in drift.get("message", "") else None

    eventually("the immutable field reported", reported, 30)
    _more_checks(operator)  # more checks: still the hand-made one
    assert (live(cluster, "deployment") or {})["metadata"]["uid"] == uid

    operator.apply(body(chart_repo_url, {"mode": "Correct", "force": True}))

    def recreated() -> dict[str, Any] | None:
        now = live(cluster, "deployment")
        if now is None or now["metadata"]["uid"] == uid:
            return None
        return now if "hand" not in now["spec"]["selector"]["matchLabels"] else None

    eventually("re-created from the manifest", recreated, 30)
    clean = eventually("the row clean", lambda: not row_drift(operator).get("objects") or None, 20)
    assert clean and revisions(cluster) == before
    assert "immutable" not in row_drift(operator).get("message", "")


def test_a_no_drift_check_costs_one_metadata_list_per_kind_and_namespace(
    operator: Operator, cluster: BedCluster
) -> None:
    """Counted in-process on the same cluster: what `check_cluster` sends, as admin."""
    revision = int(history(cluster.kubeconfig, NS, APP)[-1]["revision"])
    policy = Policy(interval=10.0, ignore=(DriftIgnore(paths=[REPLICAS]),))  # scaled earlier
    checks = [ReleaseCheck(ReleaseKey("c", NS, APP), revision, policy)]
    memory, api = DriftMemory(), api_client_from_kubeconfig(cluster.kubeconfig)
    log = RequestLog(api)
    try:
        now = time.time()
        check: dict[str, Any] = {"admin": api, "writer": api}
        check_cluster(memory, "o", checks, now=now, **check)  # the manifest read, due soon
        first = check_cluster(memory, "o", checks, now=now + 11, **check)
        assert first[checks[0].key].count == 0, first
        mark = log.mark()
        again = check_cluster(memory, "o", checks, now=now + 22, **check)
        assert again[checks[0].key].count == 0
        quiet = log.since(mark)
        # Deployment, ConfigMap, Service in one namespace: three lists, nothing else.
        assert len(quiet) == 3 and all(r.metadata_only for r in quiet), quiet
        kubectl(cluster.kubeconfig, "label", "configmap", APP, "-n", NS, "touched=yes")
        mark = log.mark()
        changed = check_cluster(memory, "o", checks, now=now + 33, **check)
        assert changed[checks[0].key].count == 0  # a label the manifest does not set
        assert [r.method for r in log.since(mark)] == ["GET"] * 4  # 3 lists + 1 read
    finally:
        api.close()  # type: ignore[no-untyped-call]
        kubectl(cluster.kubeconfig, "label", "configmap", APP, "-n", NS, "touched-")


def test_a_forged_newer_revision_is_not_applied_and_the_tenant_is_refused_outside_its_grant(
    operator: Operator, cluster: BedCluster, management: BedCluster
) -> None:
    """A newer release Secret written (as whoever can write the namespace could) to claim a
    ConfigMap in a namespace the grant does not give: Herd applies only the manifest it
    wrote, so nothing is corrected and the row says why. Were that manifest Herd's, the
    tenant's own correction is still refused there by the tenant's RBAC (checked
    in-process with the same identity the operator uses)."""
    config = cluster.kubeconfig
    kubectl(config, "create", "namespace", OUTSIDE, check=False)
    claimed = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "planted", "namespace": OUTSIDE},
        "data": {"k": "v"},
    }
    forge_release(cluster.kubeconfig, NS, APP, yaml.safe_dump(claimed))

    def refused() -> dict[str, Any] | None:
        drift = row_drift(operator)
        return drift if NOT_HERDS in drift.get("message", "") else None

    eventually("the forged revision not corrected", refused, 30)
    time.sleep(5)  # more intervals: still nothing written
    out = kubectl(config, "get", "configmap", "planted", "-n", OUTSIDE, check=False)
    assert not out

    latest = int(history(config, NS, APP)[-1]["revision"])
    admin, tenant = api_client_from_kubeconfig(config), api_client_from_kubeconfig(config)
    for name, value in impersonation(tenant_identity("default")).items():
        tenant.set_default_header(name, value)  # type: ignore[no-untyped-call]
    try:
        vouched = Recorded(latest, manifest_digest(release_manifest(admin, NS, APP, latest)))
        policy = Policy(mode=CORRECT, interval=1.0, ignore=(DriftIgnore(paths=[REPLICAS]),))
        check = ReleaseCheck(ReleaseKey("c", NS, APP), latest, policy, True, vouched)
        memory, now = DriftMemory(), time.time()
        memory.expect("o", check.key, 0.0, now)
        found = check_cluster(memory, "o", [check], admin=admin, writer=tenant, now=now)
    finally:
        admin.close()  # type: ignore[no-untyped-call]
        tenant.close()  # type: ignore[no-untyped-call]
    message = "; ".join(found[check.key].problems)
    assert OUTSIDE in message and "403" in message, found
    assert not kubectl(config, "get", "configmap", "planted", "-n", OUTSIDE, check=False)


# -- helpers ---------------------------------------------------------------------------------


def _repaired(cluster: BedCluster) -> bool:
    """The image, the ConfigMap's data and label, and the Service as the chart has them,
    with helm's release annotation (a correction must not strip what helm added)."""
    deployment, config, service = (live(cluster, k) for k in ("deployment", "configmap", "service"))
    if deployment is None or config is None or service is None:
        return False
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    labels = config["metadata"].get("labels") or {}
    owned = [
        (o["metadata"].get("annotations") or {}).get(HELM_RELEASE_NAME) for o in (config, service)
    ]
    return (
        image == IMAGE
        and config["data"]["message"] == "hello from herd"
        and "helm.sh/chart" in labels
        and owned == [APP, APP]
    )


def _more_checks(operator: Operator, count: int = 2) -> None:
    """`count` more drift checks (each that finds drift logs it, corrected or not): not a
    sleep of as many intervals, which a loaded machine may not fit in."""
    mark, line = operator.log.stat().st_size, f" objects drifted in chart {APP} ".encode()
    seen = lambda: operator.log.read_bytes()[mark:].count(line) >= count  # noqa: E731
    eventually(f"{count} more drift checks", seen, 30)


def _drifted(operator: Operator) -> int | None:
    status = operator.status()
    if not any(c["type"] == "Drifted" for c in status.get("conditions", [])):
        return None
    return int(status.get("driftedObjects", 0))


def _entries(operator: Operator, wanted: list[str]) -> dict[str, Any] | None:
    drift = row_drift(operator)
    return drift if drift.get("entries") == wanted else None


def _corrected(operator: Operator) -> dict[str, Any] | None:
    drift = row_drift(operator)
    return drift if drift.get("correctedAt") and not drift.get("objects") else None


def _fields(obj: dict[str, Any], manager: str) -> list[Any]:
    return [
        m.get("fieldsV1")
        for m in obj["metadata"].get("managedFields") or []
        if m.get("manager") == manager
    ]
