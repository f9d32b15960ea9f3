"""Command lines of the control-plane programs, one function per program.

Called by `e2e.testbed.controlplane`. Pure: paths and ports in, argv out, so the flags
every test depends on sit together and can be read without the process plumbing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from e2e.testbed.certs import Pki

SERVICE_CIDR = "10.0.0.0/24"
# First address of SERVICE_CIDR: the `kubernetes` Service, in the serving cert's SANs.
SERVICE_IP = "10.0.0.1"
POD_CIDR = "10.244.0.0/16"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
# Nodes carrying this annotation are the ones kwok pretends to be the kubelet for.
KWOK_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
KWOK_STAGES = Path(__file__).resolve().parent / "kwok-stages.yaml"


@dataclass(frozen=True)
class Shape:
    """How much of a control plane runs. The default is everything, as the e2e tests need;
    the scale benchmark (`benchmarks/scale.py`) runs many light ones on one machine.

    - `light`: apiserver without watch cache, API priority and fairness or unused API
      groups, a controller manager with only the controllers a chart install needs, and a
      Go memory limit for both (they give memory back instead of growing into free RAM);
    - `pods`: the scheduler, kwok and its fake nodes, so pods bind and run; without them a
      chart's Deployments of zero replicas and ConfigMaps still install and wait fine;
    - `audit`: the apiserver writes a JSON audit log (Metadata level), from which the
      benchmark counts the controller's real requests.
    """

    light: bool = False
    pods: bool = True
    audit: bool = False


DEFAULT_SHAPE = Shape()
LIGHT_SHAPE = Shape(light=True, pods=False)
# GOMEMLIMIT of a light cluster's Go programs (soft: the GC works harder near it).
LIGHT_MEMORY_LIMIT = {"kube-apiserver": "120MiB", "kube-controller-manager": "50MiB"}
LIGHT_GOGC = "40"
# The controllers a chart install (Deployments, Jobs, namespaces) and helm --wait need.
LIGHT_CONTROLLERS = (
    "namespace,garbagecollector,serviceaccount,serviceaccount-token,deployment,replicaset,"
    "job,statefulset,daemonset,nodelifecycle,root-ca-cert-publisher,endpointslice"
)
# Groups a light apiserver does not serve (nothing on the test bed uses them).
LIGHT_DISABLED_APIS = (
    "autoscaling/v2",
    "autoscaling/v1",
    "flowcontrol.apiserver.k8s.io/v1",
)
AUDIT_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: Metadata
"""


def light_apiserver_args(audit_dir: Path | None, light: bool) -> list[str]:
    """What `apiserver_args` adds for a `Shape`; nothing for the default one."""
    extra: list[str] = []
    if light:
        extra += [
            "--watch-cache=false",
            "--enable-priority-and-fairness=false",
            "--runtime-config=" + ",".join(f"{api}=false" for api in LIGHT_DISABLED_APIS),
            "--event-ttl=5m",
        ]
    if audit_dir is not None:
        policy = audit_dir / "audit-policy.yaml"
        audit_dir.mkdir(parents=True, exist_ok=True)
        policy.write_text(AUDIT_POLICY)
        extra += [
            f"--audit-policy-file={policy}",
            f"--audit-log-path={audit_dir / 'audit.log'}",
            "--audit-log-format=json",
            "--audit-log-mode=blocking",
        ]
    return extra


@dataclass(frozen=True)
class Ports:
    """The loopback ports one cluster's processes listen on."""

    apiserver: int
    controller_manager: int
    scheduler: int
    kwok: int


def etcd_args(binary: Path, data_dir: Path, client_port: int, peer_port: int) -> list[str]:
    client = f"http://127.0.0.1:{client_port}"
    peer = f"http://127.0.0.1:{peer_port}"
    return [
        str(binary),
        "--name=testbed",
        f"--data-dir={data_dir}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=testbed={peer}",
        # Throwaway data: skipping fsync makes every apiserver write several times
        # cheaper, which is most of what starting four control planes costs.
        "--unsafe-no-fsync=true",
        "--quota-backend-bytes=4294967296",
        "--log-level=warn",
    ]


def apiserver_args(
    binary: Path, pki: Pki, etcd_url: str, etcd_prefix: str, port: int, cert_dir: Path
) -> list[str]:
    return [
        str(binary),
        f"--etcd-servers={etcd_url}",
        # One etcd serves every cluster; the prefix keeps their objects apart.
        f"--etcd-prefix={etcd_prefix}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={port}",
        f"--cert-dir={cert_dir}",
        f"--tls-cert-file={pki.serving.cert}",
        f"--tls-private-key-file={pki.serving.key}",
        f"--client-ca-file={pki.ca.cert}",
        "--authorization-mode=Node,RBAC",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
        f"--service-account-key-file={pki.service_account_pub}",
        f"--service-account-signing-key-file={pki.service_account_key}",
        "--allow-privileged=true",
        "--profiling=false",
        # The `kubernetes` Service would otherwise get 127.0.0.1 endpoints, which
        # Endpoints validation rejects in a loop; nothing here dials that Service.
        "--endpoint-reconciler-type=none",
    ]


def controller_manager_args(
    binary: Path, pki: Pki, kubeconfig: Path, port: int, controllers: str = "*"
) -> list[str]:
    return [
        str(binary),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        f"--controllers={controllers}",
        "--leader-elect=false",
        # One shared identity instead of a service account per controller: minting ~40
        # controller tokens one after another costs ~5s per cluster at start, and the
        # controllers' own RBAC is Kubernetes' business, not something Herd tests.
        "--use-service-account-credentials=false",
        f"--service-account-private-key-file={pki.service_account_key}",
        f"--root-ca-file={pki.ca.cert}",
        f"--cluster-signing-cert-file={pki.ca.cert}",
        f"--cluster-signing-key-file={pki.ca.key}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--profiling=false",
    ]


def scheduler_args(binary: Path, kubeconfig: Path, port: int) -> list[str]:
    return [
        str(binary),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        "--leader-elect=false",
        "--profiling=false",
    ]


def kwok_args(binary: Path, kubeconfig: Path, port: int) -> list[str]:
    key, value = KWOK_NODE_ANNOTATION
    return [
        str(binary),
        f"--kubeconfig={kubeconfig}",
        f"--config={KWOK_STAGES}",
        "--manage-all-nodes=false",
        f"--manage-nodes-with-annotation-selector={key}={value}",
        # Keep a Lease per node so the node-lifecycle controller never marks them
        # NotReady and evicts pods in the middle of a long test.
        "--node-lease-duration-seconds=40",
        f"--cidr={POD_CIDR}",
        "--node-ip=127.0.0.1",
        f"--server-address=127.0.0.1:{port}",
    ]


def fake_node(name: str, gpus: int = 0) -> dict[str, object]:
    """A Node object kwok will take over: Ready at once, no taints, roomy capacity, and
    `gpus` nvidia.com/gpu when given (kwok keeps the capacity a Node is made with)."""
    key, value = KWOK_NODE_ANNOTATION
    resources = {"cpu": "32", "memory": "256Gi", "pods": "110"}
    if gpus:
        resources["nvidia.com/gpu"] = str(gpus)
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {key: value, "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "node-role.kubernetes.io/agent": "",
                "type": "kwok",
            },
        },
        "status": {"allocatable": resources, "capacity": resources},
    }
