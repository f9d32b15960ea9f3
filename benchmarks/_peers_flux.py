"""Flux in the peer benchmark: helm-controller as a local process against the test bed's
management control plane.

Callers: `benchmarks/peers.py`. One HelmRelease per chart and downstream cluster, in
flux-system, with `spec.kubeConfig.secretRef` to a Secret holding that cluster's admin
kubeconfig (the identity the other tools use there) and `dependsOn` for the chart DAG.
helm-controller listens on loopback only, without leader election or events receiver.

The charts: source-controller cannot be built from the Go module proxy
(`benchmarks.peer_tools`), so the benchmark does its part once, up front: one
ExternalArtifact per chart (Flux's API for artifacts other producers publish, behind
helm-controller's `ExternalArtifact` feature gate) whose status points at the chart's
`.tgz` on the test bed's chart repository, with its digest; every HelmRelease has a
`chartRef` to it. Flux's figures therefore leave out source-controller's work (a
HelmChart per HelmRelease, each fetched and stored): real Flux costs more.

helm-controller polls a dependency that is not Ready yet every `--requeue-dependency`
(default 30 s): the benchmark passes its own value and prints it beside the figures.
"""

from __future__ import annotations

import base64
import hashlib
import subprocess
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks._peers_measure import Figures
from benchmarks._peers_tools import FLUX_NS, Bed, Case, flux_args, wait_until
from benchmarks.peer_tools import HelmController
from kubernetes import client

from e2e.testbed.helpers import kubectl
from herd.kube.client import api_client_from_kubeconfig

HELM_API = ("helm.toolkit.fluxcd.io", "v2", FLUX_NS, "helmreleases")
ARTIFACT_API = ("source.toolkit.fluxcd.io", "v1", FLUX_NS, "externalartifacts")
CHARTS = ("app", "slow")  # the fixture charts the cases use, version 0.1.0
RECONCILE_REQUEST = "reconcile.fluxcd.io/requestedAt"


class Flux:
    name = "flux"

    def __init__(self, bed: Bed, crds: Path, helm: HelmController, options: dict[str, Any]) -> None:
        self.bed, self.options, self.helm_controller = bed, options, helm.binary
        self.api = api_client_from_kubeconfig(bed.management.kubeconfig)
        self.objects = client.CustomObjectsApi(self.api)
        self.processes: list[subprocess.Popen[bytes]] = []
        management = bed.management.kubeconfig
        kubectl(management, "apply", "--server-side", "-f", str(crds))
        kubectl(management, "apply", "--server-side", "-f", str(helm.crds))
        kubectl(management, "create", "namespace", FLUX_NS, check=False)
        for chart in CHARTS:
            self._artifact(chart)
        self._secrets()
        argv = [str(helm.binary), *flux_args(**options)]
        env = {
            "KUBECONFIG": str(management),
            "RUNTIME_NAMESPACE": FLUX_NS,
            "HOME": str(bed.workdir / "flux-home"),
            "PATH": "/usr/bin:/bin",
        }
        log = bed.workdir / "helm-controller.log"
        with log.open("wb") as out:
            self.processes.append(
                subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
            )
        # Measured from its workers' start, as the Herd operator is from its Lease.
        wait_until("helm-controller's workers", lambda: "Starting workers" in log.read_text(), 120)

    def _artifact(self, chart: str) -> None:
        """An ExternalArtifact for `chart` 0.1.0 with source-controller's part done."""
        url = f"{self.bed.repo}/{chart}-0.1.0.tgz"
        with urllib.request.urlopen(url, timeout=30) as response:
            data = response.read()
        body = {
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "ExternalArtifact",
            "metadata": {"name": chart, "namespace": FLUX_NS},
            "spec": {},
        }
        self.objects.create_namespaced_custom_object(*ARTIFACT_API, body)
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        artifact = {
            "path": f"{chart}-0.1.0.tgz",
            "url": url,
            "revision": "0.1.0",
            "digest": f"sha256:{hashlib.sha256(data).hexdigest()}",
            "lastUpdateTime": now,
            "size": len(data),
        }
        status = {"status": {"artifact": artifact}}
        self.objects.patch_namespaced_custom_object_status(*ARTIFACT_API, chart, status)

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.api.close()  # type: ignore[no-untyped-call]

    def _secrets(self) -> None:
        core = client.CoreV1Api(self.api)
        for cluster in self.bed.downstream:
            secret = client.V1Secret(
                metadata=client.V1ObjectMeta(name=f"kubeconfig-{cluster.name}"),
                data={"value": base64.b64encode(cluster.kubeconfig.read_bytes()).decode()},
            )
            core.create_namespaced_secret(FLUX_NS, secret)

    def _get(self, api: tuple[str, str, str, str], name: str) -> dict[str, Any]:
        found: Any = self.objects.get_namespaced_custom_object(*api, name)
        return dict(found)

    def _roots(self) -> list[int]:
        return [p.pid for p in self.processes if p.poll() is None]

    def releases(self, case: Case) -> list[dict[str, Any]]:
        found = []
        for cluster in self.bed.downstream:
            for chart in case.charts:
                namespace = case.namespace("flux", chart)
                found.append(
                    {
                        "apiVersion": "helm.toolkit.fluxcd.io/v2",
                        "kind": "HelmRelease",
                        "metadata": {
                            "name": f"{case.name}-{cluster.name}-{chart.name}",
                            "namespace": FLUX_NS,
                            "labels": {"bench-case": case.name},
                        },
                        "spec": {
                            "interval": "1h",
                            "releaseName": chart.name,
                            "targetNamespace": namespace,
                            "storageNamespace": namespace,
                            "install": {"createNamespace": True},
                            "timeout": "5m",
                            "chartRef": {"kind": "ExternalArtifact", "name": chart.chart},
                            "kubeConfig": {
                                "secretRef": {"name": f"kubeconfig-{cluster.name}", "key": "value"}
                            },
                            "dependsOn": [
                                {"name": f"{case.name}-{cluster.name}-{dep}"} for dep in chart.deps
                            ],
                        },
                    }
                )
        return found

    def _all_ready(self, case: Case, stamp: str = "") -> bool:
        listed: Any = self.objects.list_namespaced_custom_object(
            *HELM_API, label_selector=f"bench-case={case.name}"
        )
        items = listed["items"]
        expected = len(self.bed.downstream) * len(case.charts)
        if len(items) != expected:
            return False
        for item in items:
            status = item.get("status") or {}
            if stamp and status.get("lastHandledReconcileAt") != stamp:
                return False
            if not _ready(item):
                return False
        return True

    def deploy(self, case: Case) -> Figures:
        bodies = self.releases(case)
        window = self.bed.window(self._roots, controllers=True)
        for body in bodies:
            self.objects.create_namespaced_custom_object(*HELM_API, body)
        wait_until(f"Flux {case.name} Ready", lambda: self._all_ready(case))
        return window.stop()

    def noop(self, case: Case) -> Figures:
        stamp = f"noop-{time.time_ns()}"
        patch = {"metadata": {"annotations": {RECONCILE_REQUEST: stamp}}}
        window = self.bed.window(self._roots, controllers=True)
        for body in self.releases(case):
            self.objects.patch_namespaced_custom_object(*HELM_API, body["metadata"]["name"], patch)
        wait_until(f"Flux {case.name} no-op", lambda: self._all_ready(case, stamp))
        return window.stop()


def _ready(item: dict[str, Any]) -> bool:
    status = item.get("status") or {}
    if status.get("observedGeneration") != item["metadata"].get("generation"):
        return False
    conditions = status.get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
