"""The real node runs a Rancher-shaped helm operation pod (marker `rancher_real`, no Rancher).

`e2e/test_rancher_app.py` needs the Rancher binaries; this checks the parts under it
without them: the kubelet and containerd of `e2e.testbed.real_node`, the shell stand-in
image, the pod gateway's DNS and relay. The pod is written here the way Rancher v2.15.0
writes its operation pods (rancher/rancher `pkg/catalogv2/helmop/operation.go` and
rancher/steve `pkg/podimpersonation`: `helm-cmd` with the chart and `operation000` in a
Secret, a `proxy` container running `kubectl proxy` with a ServiceAccount token against
`https://kubernetes.default`, the kubeconfig init container, user 1000, read-only root).
It is a transcription, not Rancher: the ServiceAccount here is bound to cluster-admin
instead of impersonating a Rancher user.
"""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from e2e.testbed import binaries, image, real_node, shell_standin
from e2e.testbed.chartrepo import run_helm
from e2e.testbed.controlplane import FAKE_NODES, TestBed
from e2e.testbed.helpers import eventually, kubectl

pytestmark = pytest.mark.rancher_real

CHART = Path(__file__).resolve().parents[1] / "install" / "helm" / "herd"
OPS = "cattle-system"
POD = "helm-operation-bed"
ADMIN = """apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://kubernetes.default",
  certificate-authority: /run/secrets/kubernetes.io/serviceaccount/ca.crt}}]
users: [{name: u, user: {tokenFile: /run/secrets/kubernetes.io/serviceaccount/token}}]
contexts: [{name: d, context: {cluster: c, user: u}}]
current-context: d
"""
USER = """apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "http://127.0.0.1:8001"}}]
contexts: [{name: d, context: {cluster: c}}]
current-context: d
"""


def test_a_rancher_shaped_operation_installs_herd(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("a real node needs root (namespaces, mounts, a bridge)")
    if real_node.missing():
        image.apt_install(real_node.missing(), lane="real node")
    tools = binaries.node_tools()
    archive = shell_standin.build(tmp_path / "image", tools["kubectl"])
    bed = TestBed.start(["management"], tmp_path / "bed", binaries=binaries.ensure())
    management = bed.clusters["management"]
    node = real_node.RealNode(
        tools["kubelet"], management, tmp_path / "node", shell_standin.REFERENCE
    )
    try:
        node.start_runtime()
        node.import_image(archive)
        node.start_kubelet()
        for fake in FAKE_NODES:
            kubectl(management, "label", "node", fake, "kubernetes.io/os-")
        _operation_objects(management, tmp_path)
        began = time.monotonic()
        kubectl(management, "apply", "-f", "-", stdin=json.dumps(_pod()))
        status: dict[str, Any] = {}

        def finished() -> bool:
            status.update(
                json.loads(kubectl(management, "get", "pod", "-n", OPS, POD, "-o", "json"))[
                    "status"
                ]
            )
            helm = [s for s in status.get("containerStatuses") or [] if s["name"] == "helm"]
            return bool(helm and "terminated" in helm[0]["state"])

        eventually("the operation's helm container to end", finished, timeout=240)
        seconds = time.monotonic() - began
        log = node.container_log(OPS, POD, "helm")
        assert "SUCCESS: helm install" in log, log[-3000:]
        listed = [
            "list",
            "-n",
            "herd-system",
            "-o",
            "json",
            "--kubeconfig",
            str(management.kubeconfig),
        ]
        releases = json.loads(run_helm(listed, tmp_path).stdout)
        assert [(r["name"], r["status"]) for r in releases] == [("herd", "deployed")]
        print(
            f"\nreal node: Ready {node.ready_seconds:.1f}s, operation {seconds:.1f}s, "
            f"RSS MiB { ({k: round(v) for k, v in node.overhead_mib().items()}) }"
        )
    finally:
        node.stop()
        bed.stop()


def _operation_objects(management: Any, workdir: Path) -> None:
    """What Rancher creates before the pod: namespaces, the operation's ServiceAccount and
    its token, the two kubeconfigs and the Secret with the chart and `operation000`."""
    for namespace in (OPS, "herd-system", "fleet-default", "fleet-local"):
        kubectl(management, "create", "namespace", namespace)
    kubectl(management, "-n", OPS, "create", "serviceaccount", "helm-op")
    kubectl(
        management,
        "create",
        "clusterrolebinding",
        "helm-op",
        "--clusterrole=cluster-admin",
        f"--serviceaccount={OPS}:helm-op",
    )
    token = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/service-account-token",
        "metadata": {
            "name": "helm-op-token",
            "namespace": OPS,
            "annotations": {"kubernetes.io/service-account.name": "helm-op"},
        },
    }
    kubectl(management, "apply", "-f", "-", stdin=json.dumps(token))
    for name, text in (("admin-kubeconfig", ADMIN), ("user-kubeconfig", USER)):
        kubectl(management, "-n", OPS, "create", "configmap", name, f"--from-literal=config={text}")
    _operation_secret(management, workdir)
    token_data = ("-n", OPS, "get", "secret", "helm-op-token", "-o", "jsonpath={.data.token}")
    eventually(
        "the ServiceAccount token", lambda: bool(kubectl(management, *token_data)), timeout=60
    )


def _operation_secret(management: Any, workdir: Path) -> None:
    """The Secret Rancher mounts at /home/shell/helm: the chart, its values, the arguments."""
    run_helm(["package", str(CHART), "--destination", str(workdir)], workdir)
    chart = next(workdir.glob("herd-*.tgz"))
    args = [
        "install",
        "--namespace=herd-system",
        "--timeout=600s",
        "--wait=true",
        "--values=/home/shell/helm/values.yaml",
        "herd",
        f"/home/shell/helm/{chart.name}",
    ]
    data = {
        "operation000": "\0".join(args).encode(),
        chart.name: chart.read_bytes(),
        "values.yaml": b"replicas: 1\n",
    }
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "helm-op-data", "namespace": OPS},
        "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
    }
    kubectl(management, "apply", "-f", "-", stdin=json.dumps(secret))


def _containers() -> list[dict[str, Any]]:
    image_ref = shell_standin.REFERENCE
    kube = [{"name": "KUBECONFIG", "value": "/home/shell/.kube/config"}]
    mount = [
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "run", "mountPath": "/run"},
        {"name": "data", "mountPath": "/home/shell/helm", "readOnly": True},
        {"name": "user", "mountPath": "/home/shell/.kube/config", "subPath": "config"},
    ]
    proxy_mounts = [
        {"name": "admin", "mountPath": "/home/shell/.kube/config", "subPath": "config"},
        {"name": "token", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"},
    ]
    return [
        {
            "name": "helm",
            "image": image_ref,
            "command": ["helm-cmd"],
            "env": kube,
            "workingDir": "/home/shell/helm",
            "stdin": True,
            "tty": True,
            "stdinOnce": True,
            "volumeMounts": mount,
            "securityContext": {
                "readOnlyRootFilesystem": True,
                "allowPrivilegeEscalation": False,
            },
        },
        {
            "name": "proxy",
            "image": image_ref,
            "env": kube,
            "command": ["sh", "-c", "kubectl proxy --disable-filter || true"],
            "securityContext": {"readOnlyRootFilesystem": True},
            "volumeMounts": proxy_mounts,
        },
    ]


def _pod() -> dict[str, Any]:
    image_ref = shell_standin.REFERENCE
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": POD, "namespace": OPS},
        "spec": {
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 1000,
                "runAsGroup": 1000,
                "fsGroup": 1000,
            },
            "automountServiceAccountToken": False,
            "restartPolicy": "Never",
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "tolerations": [
                {
                    "key": "node-role.kubernetes.io/control-plane",
                    "operator": "Exists",
                    "effect": "NoSchedule",
                }
            ],
            "volumes": [
                {"name": "tmp", "emptyDir": {}},
                {"name": "run", "emptyDir": {}},
                {"name": "data", "secret": {"secretName": "helm-op-data"}},
                {"name": "admin", "configMap": {"name": "admin-kubeconfig"}},
                {"name": "user", "emptyDir": {}},
                {"name": "user-cm", "configMap": {"name": "user-kubeconfig"}},
                {"name": "token", "secret": {"secretName": "helm-op-token"}},
            ],
            "initContainers": [
                {
                    "name": "init-kubeconfig-volume",
                    "image": image_ref,
                    "command": ["sh", "-c", "cp /home/.kube/config /tmp/.kube/config"],
                    "volumeMounts": [
                        {"name": "user-cm", "mountPath": "/home/.kube/config", "subPath": "config"},
                        {"name": "user", "mountPath": "/tmp/.kube"},
                    ],
                }
            ],
            "containers": _containers(),
        },
    }
