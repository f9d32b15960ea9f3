"""A Service of a test-bed cluster whose one endpoint is a server the test runs itself.

The API server's service proxy forwards only to endpoints that are addresses of existing
pods, and never to loopback. So `expose` makes, in `namespace`: a Pod on a Node no kubelet
(nor kwok) manages, its status written as Running and Ready at the server's address; a
selector-less Service; and Endpoints naming that pod at that address. The server runs in
a network namespace of the test's own (`e2e.testbed.netns`). `remove` deletes the three.

Callers: `e2e/test_addons.py` (the NeuVector stand-in), `e2e/test_gpu.py` (dcgm-exporter's).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from e2e.testbed import rancher

STANDIN_NODE = "herd-nv-standin"  # one unmanaged Node carries every stand-in pod


def expose(
    kubeconfig: Path,
    namespace: str,
    name: str,
    *,
    address: str,
    port: int,
    port_name: str,
    service_port: int,
    labels: Mapping[str, str] | None = None,
) -> None:
    meta = client.V1ObjectMeta
    with rancher.api_client(kubeconfig) as api:
        core = client.CoreV1Api(api)
        try:  # no kubelet and no kwok will ever look after this Node
            core.create_node(client.V1Node(metadata=meta(name=STANDIN_NODE)))
        except ApiException as error:
            if error.status != 409:
                raise
        core.create_namespaced_pod(
            namespace,
            client.V1Pod(
                metadata=meta(name=name),
                spec=client.V1PodSpec(
                    node_name=STANDIN_NODE,
                    tolerations=[client.V1Toleration(operator="Exists")],
                    containers=[client.V1Container(name="api", image="example.com/standin:1")],
                ),
            ),
        )
        running = {
            "phase": "Running",
            "podIP": address,
            "podIPs": [{"ip": address}],
            "conditions": [{"type": "Ready", "status": "True"}],
        }
        core.patch_namespaced_pod_status(name, namespace, {"status": running})
        core.create_namespaced_service(
            namespace,
            client.V1Service(
                metadata=meta(name=name, labels=dict(labels or {})),
                spec=client.V1ServiceSpec(
                    ports=[client.V1ServicePort(name=port_name, port=service_port)]
                ),
            ),
        )
        pod = client.V1ObjectReference(kind="Pod", namespace=namespace, name=name)
        core.create_namespaced_endpoints(
            namespace,
            client.V1Endpoints(
                metadata=meta(name=name),
                subsets=[
                    client.V1EndpointSubset(
                        addresses=[client.V1EndpointAddress(ip=address, target_ref=pod)],
                        ports=[client.CoreV1EndpointPort(name=port_name, port=port)],
                    )
                ],
            ),
        )


def remove(kubeconfig: Path, namespace: str, name: str) -> None:
    with rancher.api_client(kubeconfig) as api:
        core = client.CoreV1Api(api)
        for delete in (
            core.delete_namespaced_service,
            core.delete_namespaced_endpoints,
            core.delete_namespaced_pod,
        ):
            try:
                delete(name, namespace, grace_period_seconds=0)
            except ApiException as error:
                if error.status != 404:
                    raise
