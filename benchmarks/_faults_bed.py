"""The fault suite's world: test bed, chart repository, Rancher registration, Stack helpers.

Role: everything the scenarios of `benchmarks/faults.py` share. One management cluster
and two downstream clusters, registered Rancher-style in `fleet-faults`; controllers made
per scenario (`Bed.controller`), each watching its own namespace so scenarios never see
each other's Stacks. Callers: `benchmarks/faults.py`, `benchmarks/_faults_*.py`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from e2e.testbed import faults, helpers, rancher
from e2e.testbed.controlplane import Cluster, TestBed
from e2e.testbed.helpers import kubectl
from e2e.testbed.herd_controller import (
    LOOPBACK_EGRESS,
    Controller,
    service_account_kubeconfig,
)

RANCHER_NS = "fleet-faults"
IDS = {"downstream-1": "c-m-fault001", "downstream-2": "c-m-fault002"}
TEAM = "faults"
# Short enough that stuck-release recovery fits a trial; names from issue 11 (C5/C6).
SETTINGS = {
    "HERD_RANCHER_NAMESPACES": RANCHER_NS,
    "HERD_RESYNC_SECONDS": "10",
    "HERD_RETRY_SECONDS": "3",
    "HERD_FLEET_SECONDS": "1",
    "HERD_LEASE_SECONDS": "10",
    "HERD_STUCK_SECONDS": "10",
    "HERD_BACKOFF_MAX_SECONDS": "10",
    # The bed's chart repository is on loopback, which tenant Stacks may not reach otherwise.
    "HERD_EGRESS_ALLOW_CIDRS": LOOPBACK_EGRESS,
}


class NotMeasured(Exception):
    """A figure cannot be measured (a missing feature, a setup failure): print n/a."""


@dataclass
class Bed:
    testbed: TestBed
    repo_url: str
    directory: Path
    downstream: list[Cluster]
    controllers: list[Controller] = field(default_factory=list)

    @property
    def management(self) -> Cluster:
        return self.testbed.clusters["management"]

    @property
    def mgmt(self) -> Path:
        return self.management.kubeconfig

    @property
    def kubeconfigs(self) -> dict[str, Path]:
        return {IDS[c.name]: c.kubeconfig for c in self.downstream}

    def register(self) -> None:
        rancher.register_clusters(
            self.mgmt,
            [
                rancher.RancherCluster(f"f-{c.name}", IDS[c.name], c.kubeconfig, {"team": TEAM})
                for c in self.downstream
            ],
            namespace=RANCHER_NS,
        )

    def set_team(self, cluster: Cluster, team: str) -> None:
        rancher.set_labels(self.mgmt, f"f-{cluster.name}", {"team": team}, namespace=RANCHER_NS)

    def controller(self, name: str, namespace: str, **settings: str) -> Controller:
        """A new (not started) controller watching `namespace`, which is created, and
        granted (ClusterGrant) every cluster of the bed and any release namespace."""
        kubectl(self.mgmt, "create", "namespace", namespace, check=False)
        grant = {
            "apiVersion": "herd.suse.com/v1",
            "kind": "ClusterGrant",
            "metadata": {"name": f"faults-{namespace}"},
            "spec": {
                "namespaces": [namespace],
                "clusters": {"clusterIds": sorted(IDS.values())},
                "targetNamespaces": ["*"],
            },
        }
        self.apply(grant)
        directory = self.directory / "controllers" / name
        kubeconfig = service_account_kubeconfig(self.mgmt, directory / "controller.yaml")
        controller = Controller(
            name, directory, kubeconfig, namespace, settings={**SETTINGS, **settings}
        )
        self.controllers.append(controller)
        return controller

    def stop_controllers(self) -> None:
        for controller in self.controllers:
            controller.stop(grace=20)

    # -- Stacks -------------------------------------------------------------------------

    def apply(self, body: dict[str, Any]) -> None:
        kubectl(self.mgmt, "apply", "-f", "-", stdin=yaml.safe_dump(body))

    def stack(self, name: str, namespace: str) -> dict[str, Any]:
        out = kubectl(self.mgmt, "get", "stack", name, "-n", namespace, "-o", "json", check=False)
        return json.loads(out) if out.strip() else {}

    def converged(
        self, name: str, namespace: str, release_ns: str, clusters: list[str] | None = None
    ) -> bool:
        """Deployed at the current generation, and every release `deployed` on every target."""
        stack = self.stack(name, namespace)
        status = stack.get("status") or {}
        generation = stack.get("metadata", {}).get("generation")
        if status.get("phase") != "Deployed" or status.get("observedGeneration") != generation:
            return False
        charts = {c.get("releaseName") or c["name"] for c in stack["spec"]["charts"]}
        for cluster in clusters or list(self.kubeconfigs):
            rows = faults.releases(self.kubeconfigs[cluster], release_ns)
            if {n for n, r in rows.items() if r["status"] == "deployed"} != charts:
                return False
        return True

    def wait_converged(
        self, name: str, namespace: str, release_ns: str, timeout: float, **kw: Any
    ) -> float:
        """Seconds until converged; raises AssertionError after `timeout`."""
        start = time.monotonic()
        helpers.eventually(
            f"{namespace}/{name} converged",
            lambda: self.converged(name, namespace, release_ns, **kw),
            timeout,
            interval=1.0,
        )
        return time.monotonic() - start


def charts(
    repo: str,
    namespace: str,
    message: str,
    *,
    count: int = 4,
    wait: bool = True,
    timeout: str = "30s",
) -> list[dict[str, Any]]:
    """a; b, c after a; d after b and c (for count 4): a small diamond of the `app` chart."""
    common = {
        "chart": "app",
        "repo": repo,
        "version": "0.1.0",
        "namespace": namespace,
        "wait": wait,
        "timeout": timeout,
        "values": {"inline": {"message": message}},
    }
    deps: dict[str, list[str]] = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}
    names = list(deps)[:count]
    return [{"name": n, **common, "dependsOn": [d for d in deps[n] if d in names]} for n in names]


def stack_body(name: str, namespace: str, chart_list: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "herd.suse.com/v1",
        "kind": "Stack",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "env": "faults",
            "targets": {"selector": {"matchLabels": {"team": TEAM}}},
            "charts": chart_list,
        },
    }


def first_mutation(controller: Controller, since: float, timeout: float) -> float:
    """Epoch of the first mutating helm call the controller made after `since`."""
    calls = helpers.eventually(
        f"a helm upgrade by {controller.name}",
        lambda: [c for c in controller.helm_calls(since) if c.mutating],
        timeout,
        interval=0.2,
    )
    return calls[0].at
