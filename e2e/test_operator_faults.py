"""The operator under real faults: a management API outage mid-rollout, a cluster that
leaves a Stack while down, a Stack deleted while a cluster is down, a permanent failure
at every resync. `herd operator` runs as a process; faults are real (apiservers
stopped and started), and everything is observed through kubectl and helm.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from e2e.testbed import faults, outage, rancher
from e2e.testbed.chartrepo import helm_binary
from e2e.testbed.controlplane import Cluster as BedCluster
from e2e.testbed.helpers import eventually, kubectl
from e2e.testbed.operator_run import Operator, helm_releases, run_operator

FLEET_NS = "fleet-faults"
RESYNC = 3
IDS = {
    "downstream-1": "c-m-ft000001",
    "downstream-2": "c-m-ft000002",
    "downstream-3": "c-m-ft000003",
}
SLOW_CONFIGMAPS = 150  # the `slow` chart's ConfigMaps: about 4 s of helm on a quiet bed
LABELS = {
    "downstream-1": {"faults": "yes"},
    "downstream-2": {"faults": "no"},
    "downstream-3": {"faults": "yes"},
}


@pytest.fixture(scope="module")
def operator(
    management: BedCluster, downstream: list[BedCluster], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operator]:
    with run_operator(
        management,
        downstream,
        tmp_path_factory.mktemp("faults"),
        fleet_ns=FLEET_NS,
        ids=IDS,
        labels=LABELS,
        # The management outage test stops the API for several seconds: with the default
        # 15 s Lease the leader gives up (10 s without renewal) and exits, by design. A
        # longer Lease keeps this test about status writes, not leader election
        # (e2e/test_ha.py covers that). A resync every 3 s: the held-failure test watches
        # two of them go by. A cluster back from an outage is retried within 4 s.
        env={
            "HERD_LEASE_SECONDS": "60",
            "HERD_RESYNC_SECONDS": str(RESYNC),
            "HERD_BACKOFF_MAX_SECONDS": "4",
        },
    ) as running:
        yield running


def bed(downstream: list[BedCluster], name: str) -> BedCluster:
    return next(c for c in downstream if c.name == name)


def stack(name: str, namespace: str, charts: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "herd.suse.com/v1",
        "kind": "Stack",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "targets": {"selector": {"matchLabels": {"faults": "yes"}}},
            "charts": charts,
            **spec,
        },
    }


def chain(repo: str, namespace: str, length: int) -> list[dict[str, Any]]:
    common = {"chart": "app", "repo": repo, "version": "0.1.0", "namespace": namespace}
    names = [f"link{i}" for i in range(length)]
    return [
        {"name": n, **common, "wait": True, "timeout": "2m", "dependsOn": names[:i][-1:]}
        for i, n in enumerate(names)
    ]


def apply(operator: Operator, body: dict[str, Any]) -> None:
    operator.name = body["metadata"]["name"]
    operator.apply(body)


def settled(operator: Operator, phase: str, timeout: float = 180.0) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        found = operator.stack()
        status = found.get("status") or {}
        generation = found.get("metadata", {}).get("generation")
        ok = status.get("phase") == phase and status.get("observedGeneration") == generation
        return status if ok else None

    return eventually(f"{operator.name} {phase}", probe, timeout)


def history(cluster: BedCluster, namespace: str, release: str) -> list[dict[str, Any]]:
    return faults.history(cluster.kubeconfig, namespace, release)


def uninstall(cluster: BedCluster, release: str, namespace: str) -> None:
    """`helm uninstall` by hand, of a release Herd was told to leave behind."""
    subprocess.run(
        [helm_binary(), "--kubeconfig", str(cluster.kubeconfig), "uninstall", release,
         "-n", namespace],
        check=True,
        capture_output=True,
    )  # fmt: skip


# Failed status writes before the API comes back (the writer backs off from half a second
# to 4 s, jittered: about 7 s of outage): its backoff has grown as in a long outage, and
# the Stack must still converge soon after.
WRITER_FAILURES = 5


def writer_failures(operator: Operator) -> int:
    return operator.log.read_text().count("Cannot write the Stack's status")


def rolled_out(targets: list[BedCluster], namespace: str, length: int) -> bool:
    """Every link of the chain deployed on every target (helm's own record)."""
    for cluster in targets:
        found = helm_releases(cluster, namespace)
        if len(found) < length or any(r["status"] != "deployed" for r in found.values()):
            return False
    return True


def test_management_outage_only_delays_status(
    operator: Operator, management: BedCluster, downstream: list[BedCluster], chart_repo_url: str
) -> None:
    """The management API stops mid-rollout and stays down until helm has finished
    everywhere and the status writer has failed again and again: helm carries on (no
    failed or cancelled revision), and the Stack converges once the API is back."""
    namespace, length = "ft-outage", 6
    targets = [bed(downstream, "downstream-1"), bed(downstream, "downstream-3")]
    apply(operator, stack("ft-outage", namespace, chain(chart_repo_url, namespace, length)))
    eventually("the rollout under way", lambda: operator.status().get("phase") == "Deploying", 120)
    failures = writer_failures(operator)
    management.stop_apiserver()
    stopped = time.monotonic()
    try:
        eventually(
            "helm done while the API is down", lambda: rolled_out(targets, namespace, length)
        )
        eventually(
            "the writer failing again and again",
            lambda: writer_failures(operator) >= failures + WRITER_FAILURES,
        )
    finally:
        management.start_apiserver()
    returned = time.monotonic()
    status = settled(operator, "Deployed")
    converged = time.monotonic() - returned
    print(f"\nmanagement API down {returned - stopped:.1f}s; converged {converged:.1f}s after")
    for cluster in targets:
        for n in range(length):
            revisions = history(cluster, namespace, f"link{n}")
            assert [r["status"] for r in revisions] == ["deployed"], (cluster.name, revisions)
    assert {r["status"] for r in status["deployments"]} == {"Deployed"}
    assert len(status["deployments"]) == 2 * length
    log = operator.log.read_text()
    assert "Cannot write the Stack's status" in log, "the outage was not seen by the writer"
    assert "Reconcile failed" not in log and "TaskGroup" not in log
    assert converged < 60
    kubectl(
        management.kubeconfig, "delete", "stack", "ft-outage", "-n", "default", "--timeout=120s"
    )


def test_a_cluster_that_leaves_while_down_is_cleaned_when_it_returns(
    operator: Operator, management: BedCluster, downstream: list[BedCluster], chart_repo_url: str
) -> None:
    namespace = "ft-depart"
    apply(operator, stack("ft-depart", namespace, chain(chart_repo_url, namespace, 1)))
    status = settled(operator, "Deployed")
    third = bed(downstream, "downstream-3")
    assert IDS["downstream-3"] in status["releaseClusters"]
    assert set(helm_releases(third, namespace)) == {"link0"}
    outage.stop_apiserver(third)
    try:
        rancher.set_labels(
            management.kubeconfig, "op-downstream-3", {"faults": "no"}, namespace=FLEET_NS
        )

        def left() -> dict[str, Any] | None:
            s = operator.status()
            return s if s.get("clusterCount") == 1 and s.get("phase") == "Deployed" else None

        status = eventually("the Stack without the stopped cluster", left, 120)
        assert IDS["downstream-3"] in status["releaseClusters"], status
        time.sleep(5)  # a few retries while it is down: they must not lose it
        assert IDS["downstream-3"] in operator.status()["releaseClusters"]
    finally:
        third.start_apiserver()
    try:
        eventually(
            "the departed cluster cleaned", lambda: helm_releases(third, namespace) == {}, 360
        )
        eventually(
            "the record without it",
            lambda: IDS["downstream-3"] not in operator.status().get("releaseClusters", ["?"]),
            60,
        )
    finally:
        rancher.set_labels(
            management.kubeconfig, "op-downstream-3", LABELS["downstream-3"], namespace=FLEET_NS
        )
    settled(operator, "Deployed")
    kubectl(
        management.kubeconfig, "delete", "stack", "ft-depart", "-n", "default", "--timeout=120s"
    )


def test_deletion_during_a_rollout_leaves_nothing_behind(
    operator: Operator, management: BedCluster, downstream: list[BedCluster], chart_repo_url: str
) -> None:
    """Deleting while the keeper installs: the pass finishes, then deletion removes all."""
    namespace, length = "ft-midway", 4
    charts = chain(chart_repo_url, namespace, length)
    # link0 takes seconds (helm applies and waits on each ConfigMap): the rollout is still
    # under way when the test sees it Deploying and deletes the Stack.
    charts[0] |= {"chart": "slow", "values": {"inline": {"count": SLOW_CONFIGMAPS}}}
    apply(operator, stack("ft-midway", namespace, charts))
    eventually("the rollout under way", lambda: operator.status().get("phase") == "Deploying", 120)
    kubectl(
        management.kubeconfig, "delete", "stack", "ft-midway", "-n", "default", "--timeout=300s"
    )
    for cluster in (bed(downstream, "downstream-1"), bed(downstream, "downstream-3")):
        assert helm_releases(cluster, namespace) == {}, cluster.name
    time.sleep(5)  # nothing installs after the Stack is gone
    for cluster in (bed(downstream, "downstream-1"), bed(downstream, "downstream-3")):
        assert helm_releases(cluster, namespace) == {}, cluster.name


def deleting(operator: Operator) -> dict[str, Any] | None:
    for condition in operator.status().get("conditions", []):
        if condition["type"] == "Deleting" and condition["status"] == "True":
            return dict(condition)
    return None


def test_deletion_waits_visibly_for_a_down_cluster_then_cleans_it(
    operator: Operator, management: BedCluster, downstream: list[BedCluster], chart_repo_url: str
) -> None:
    namespace = "ft-delete"
    apply(operator, stack("ft-delete", namespace, chain(chart_repo_url, namespace, 2)))
    settled(operator, "Deployed")
    first, third = bed(downstream, "downstream-1"), bed(downstream, "downstream-3")
    outage.stop_apiserver(third)
    try:
        kubectl(
            management.kubeconfig, "delete", "stack", "ft-delete", "-n", "default", "--wait=false"
        )
        condition = eventually("a Deleting condition", lambda: deleting(operator), 120)
        assert condition["reason"] == "ClusterUnreachable"
        assert IDS["downstream-3"] in condition["message"]
        assert "herd.suse.com/orphan-clusters" in condition["message"]
        assert operator.status()["phase"] == "Deleting"
        eventually("the live cluster cleaned", lambda: helm_releases(first, namespace) == {}, 60)
        assert operator.stack(), "the Stack went while a cluster may hold its releases"
    finally:
        third.start_apiserver()
    eventually("the Stack gone", lambda: operator.stack() == {}, 360)
    assert helm_releases(third, namespace) == {}


def test_orphan_annotation_and_policy_release_a_deletion(
    operator: Operator, management: BedCluster, downstream: list[BedCluster], chart_repo_url: str
) -> None:
    namespace = "ft-orphan"
    first, third = bed(downstream, "downstream-1"), bed(downstream, "downstream-3")
    apply(operator, stack("ft-orphan", namespace, chain(chart_repo_url, namespace, 1)))
    settled(operator, "Deployed")
    outage.stop_apiserver(third)
    try:
        kubectl(
            management.kubeconfig, "delete", "stack", "ft-orphan", "-n", "default", "--wait=false"
        )
        eventually("a Deleting condition", lambda: deleting(operator), 120)
        kubectl(
            management.kubeconfig,
            "annotate",
            "stack",
            "ft-orphan",
            "-n",
            "default",
            f"herd.suse.com/orphan-clusters={IDS['downstream-3']}",
        )
        eventually("the Stack gone", lambda: operator.stack() == {}, 120)
        assert helm_releases(first, namespace) == {}
    finally:
        third.start_apiserver()
    assert set(helm_releases(third, namespace)) == {"link0"}, "orphaned releases stay"
    uninstall(third, "link0", namespace)
    # deletionPolicy Orphan: the Stack goes at once, its releases stay.
    apply(
        operator,
        stack("ft-keep", namespace, chain(chart_repo_url, namespace, 1), deletionPolicy="Orphan"),
    )
    settled(operator, "Deployed")
    kubectl(management.kubeconfig, "delete", "stack", "ft-keep", "-n", "default", "--timeout=60s")
    for cluster in (first, third):
        assert set(helm_releases(cluster, namespace)) == {"link0"}
        uninstall(cluster, "link0", namespace)


def test_a_permanent_failure_is_not_retried_until_asked(
    operator: Operator, management: BedCluster, downstream: list[BedCluster], chart_repo_url: str
) -> None:
    namespace = "ft-held"
    broken = {
        "name": "broken",
        "chart": "broken",
        "repo": chart_repo_url,
        "version": "0.1.0",
        "namespace": namespace,
    }
    charts = [*chain(chart_repo_url, namespace, 1), broken]
    apply(operator, stack("ft-held", namespace, charts))
    status = settled(operator, "Degraded")
    failed = [r for r in status["deployments"] if r["status"] == "Failed"]
    assert len(failed) == 2 and all(r["failedConfig"] for r in failed)
    warnings = [e for e in operator.events() if e["type"] == "Warning" and "broken" in e["message"]]
    count = sum(int(e.get("count") or 1) for e in warnings)
    tries = operator.log.read_text().count("broken.mustSet is required")
    assert count >= 1 and tries >= 2
    time.sleep(2.5 * RESYNC)  # more than two resyncs
    again = [e for e in operator.events() if e["type"] == "Warning" and "broken" in e["message"]]
    assert sum(int(e.get("count") or 1) for e in again) == count, (
        "a resync posted the failure again"
    )
    held = settled(operator, "Degraded")
    assert [r["message"] for r in held["deployments"] if r["status"] == "Failed"] == [
        r["message"] for r in failed
    ]
    assert operator.log.read_text().count("broken.mustSet is required") == tries, "retried"
    kubectl(
        management.kubeconfig,
        "annotate",
        "stack",
        "ft-held",
        "-n",
        "default",
        "herd.suse.com/reconcile-at=now",
        "--overwrite",
    )
    eventually(
        "a new attempt after reconcile-at",
        lambda: operator.log.read_text().count("broken.mustSet is required") > tries,
        120,
    )
    kubectl(management.kubeconfig, "delete", "stack", "ft-held", "-n", "default", "--timeout=120s")


def test_a_cluster_removed_from_the_inventory_releases_a_deletion(
    operator: Operator, management: BedCluster, downstream: list[BedCluster], chart_repo_url: str
) -> None:
    namespace = "ft-gone"
    third = bed(downstream, "downstream-3")
    apply(operator, stack("ft-gone", namespace, chain(chart_repo_url, namespace, 1)))
    settled(operator, "Deployed")
    outage.stop_apiserver(third)
    try:
        kubectl(
            management.kubeconfig, "delete", "stack", "ft-gone", "-n", "default", "--wait=false"
        )
        eventually("a Deleting condition", lambda: deleting(operator), 120)
        rancher.unregister(management.kubeconfig, "op-downstream-3", namespace=FLEET_NS)
        eventually("the Stack gone", lambda: operator.stack() == {}, 120)

        def warned() -> bool:
            return any(
                IDS["downstream-3"] in e["message"] and "no longer managed" in e["message"]
                for e in operator.events()
                if e["type"] == "Warning"
            )

        try:
            eventually("a Warning Event naming the released cluster", warned, 30)
        except AssertionError as error:
            every = kubectl(management.kubeconfig, "get", "events", "-n", "default")
            raise AssertionError(f"{error}\n{every}\n{operator.log.read_text()[-3000:]}") from None
    finally:
        third.start_apiserver()
        rancher.register_clusters(
            management.kubeconfig,
            [
                rancher.RancherCluster(
                    "op-downstream-3",
                    IDS["downstream-3"],
                    third.kubeconfig,
                    dict(LABELS["downstream-3"]),
                )
            ],
            namespace=FLEET_NS,
        )
    assert set(helm_releases(third, namespace)) == {"link0"}, "left, as the Warning said"
    uninstall(third, "link0", namespace)
