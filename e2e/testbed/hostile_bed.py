"""The hostile-bytes scenario on the test bed: tenants, hostile charts, Lease and lag probes.

Role: shared by `e2e/test_security_hostile.py` and `benchmarks/faults.py hostile`. It
registers one downstream cluster (Rancher-shaped), grants two tenants (`hx-good`,
`hx-evil`), leaves `hx-nogrant` without any grant, serves the charts of
`e2e.testbed.hostile_charts` from a real chart repository, and builds the Stacks:

| Stack | what it does |
|---|---|
| hx-evil/alias-bomb | crds/ holds a YAML alias bomb (render check) |
| hx-evil/deep-yaml | crds/ nests YAML 900 deep (render check) |
| hx-evil/many-objects | 6000 objects in one manifest (render check) |
| hx-nogrant/templated | a 60k-character templated value, in a namespace with no grant |
| herd-system/zip-bomb | admin, `crds: CreateReplace`, a subchart that becomes 150 MB |
| hx-good/good | the other tenant's well-behaved Stack: must reach Deployed |

`LeaseWatch` follows the controller's Lease (read every 0.25 s) and records each
`renewTime`; `loop_lag` reads `herd_event_loop_lag_max_seconds` from the metrics endpoint.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from e2e.testbed import hostile_charts, rancher
from e2e.testbed.chartrepo import ChartRepo, run_helm
from e2e.testbed.helpers import api_get, get_stack, kubectl
from e2e.testbed.herd_controller import (
    CONTROLLER_NS,
    LOOPBACK_EGRESS,
    Controller,
    prepare_management,
    service_account_kubeconfig,
)
from e2e.testbed.processes import free_port

RANCHER_NS = "fleet-hostile"
CLUSTER = "c-m-hx000001"
GOOD, EVIL, NOGRANT = "hx-good", "hx-evil", "hx-nogrant"
TENANTS = (GOOD, EVIL, NOGRANT)
LEASE = "herd-controller"
LEASE_SECONDS = 15.0


def controller(directory: Path, management: Path, **settings: str) -> Controller:
    """A (not started) controller watching the tenants and herd-system, as install/ runs it
    (its ServiceAccount's token); `settings` override the defaults (`HERD_*`)."""
    kubeconfig = service_account_kubeconfig(management, directory / "sa.yaml")
    defaults = {
        "HERD_RANCHER_NAMESPACES": RANCHER_NS,
        "HERD_RESYNC_SECONDS": "60",
        "HERD_RETRY_SECONDS": "3",
        "HERD_FLEET_SECONDS": "2",
        "HERD_LEASE_SECONDS": str(int(LEASE_SECONDS)),
        "HERD_CHECK_SECONDS": "10",  # the product's default, not the suite's (e2e/conftest.py)
        "HERD_METRICS_PORT": str(free_port()),
        "HERD_EGRESS_ALLOW_CIDRS": LOOPBACK_EGRESS,
    }
    return Controller(
        directory.name, directory, kubeconfig, CONTROLLER_NS, {**defaults, **settings},
        also_watch=TENANTS,
    )  # fmt: skip


def grants() -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "herd.suse.com/v1",
            "kind": "ClusterGrant",
            "metadata": {"name": tenant},
            "spec": {
                "namespaces": [tenant],
                "clusters": {"clusterIds": [CLUSTER]},
                "targetNamespaces": [f"{tenant}-*"],
            },
        }
        for tenant in (GOOD, EVIL)
    ]


def prepare(management: Path, downstream: Path) -> None:
    """install/ on the management cluster, the downstream cluster, namespaces and grants."""
    prepare_management(management, [RANCHER_NS])
    rancher.register_clusters(
        management,
        [rancher.RancherCluster("hx-cluster", CLUSTER, downstream, {"hx": "yes"})],
        namespace=RANCHER_NS,
    )
    for namespace in TENANTS:
        kubectl(management, "create", "namespace", namespace, check=False)
    kubectl(management, "apply", "-f", "-", stdin=yaml.safe_dump_all(grants()))


def serve_charts(workdir: Path) -> ChartRepo:
    repo = workdir / "repo"
    hostile_charts.hostile_repository(repo)
    run_helm(["repo", "index", str(repo)], workdir)
    # helm's own indexer loads each archive with helm's size limits and drops the bomb from
    # the index without a word; an attacker's repository lists it anyway.
    hostile_charts.index_unlisted(repo)
    return ChartRepo.serve(repo)


def stack(
    namespace: str, name: str, chart: str, repo: str, release_ns: str, **chart_extra: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "herd.suse.com/v1",
        "kind": "Stack",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "targets": {"clusterIds": [CLUSTER]},
            "charts": [
                {
                    "name": name,
                    "chart": chart,
                    "repo": repo,
                    "version": "0.1.0",
                    "namespace": release_ns,
                    "releaseName": name,
                    **chart_extra,
                }
            ],
        },
    }


def hostile_stacks(repo: str) -> list[dict[str, Any]]:
    """The five hostile Stacks."""
    templated = {"templated": True, "inline": {"note": "{{" * 30_000}}  # 60k characters
    return [
        stack(EVIL, "alias-bomb", "alias-bomb", repo, f"{EVIL}-a"),
        stack(EVIL, "deep-yaml", "deep-yaml", repo, f"{EVIL}-a"),
        stack(EVIL, "many-objects", "many-objects", repo, f"{EVIL}-a"),
        stack(NOGRANT, "templated", "plain", repo, f"{NOGRANT}-a", values=templated),
        stack(CONTROLLER_NS, "zip-bomb", "zip-bomb", repo, "hx-admin", crds="CreateReplace"),
    ]


def good_stack(repo: str) -> dict[str, Any]:
    return stack(GOOD, "good", "plain", repo, f"{GOOD}-apps")


def apply(management: Path, body: dict[str, Any]) -> None:
    kubectl(management, "apply", "-f", "-", stdin=json.dumps(body))


def status(management: Path, body: dict[str, Any]) -> dict[str, Any]:
    meta = body["metadata"]
    found = get_stack(management, meta["namespace"], meta["name"])
    current: dict[str, Any] = found.get("status") or {}
    fresh = current.get("observedGeneration") == found["metadata"]["generation"]
    return current if fresh else {}


def messages(found: dict[str, Any]) -> list[str]:
    """The Stack message and every row message."""
    rows = [r.get("message") or "" for r in found.get("deployments") or []]
    return [found.get("message") or "", *rows]


def loop_lag(port: int) -> float:
    """The controller's largest event-loop lag so far (seconds)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    for line in text.splitlines():
        if line.startswith("herd_event_loop_lag_max_seconds "):
            return float(line.split()[1])
    raise AssertionError("herd_event_loop_lag_max_seconds is not exported")


class LeaseWatch:
    """Every renewTime the controller writes, in order: the Lease read through the API every
    0.25 s (a renewal comes every few seconds, so none is missed; the times are the
    server's). `kubectl get -w` did this before, but a watch that ends (its stream closed
    early once, and stderr said nothing) left a run with two renewals seen in 39 s."""

    def __init__(self, management: Path, name: str = LEASE, interval: float = 0.25) -> None:
        self.renewals: list[datetime] = []
        self._path = f"/apis/coordination.k8s.io/v1/namespaces/{CONTROLLER_NS}/leases/{name}"
        self._management = management
        self._interval = interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stopped.wait(self._interval):
            found = api_get(self._management, self._path, check=False) or {}
            stamp = (found.get("spec") or {}).get("renewTime")
            if stamp:
                moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
                if not self.renewals or moment != self.renewals[-1]:
                    self.renewals.append(moment)

    def longest_gap(self) -> float:
        pairs = zip(self.renewals, self.renewals[1:], strict=False)
        return max(((b - a).total_seconds() for a, b in pairs), default=0.0)

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(10)
