"""A downstream cluster's outage whose recovery costs seconds, not a kwok Lease period.

`Cluster.stop_apiserver` stops kwok (cleanly) before the apiserver. kwok leaves its node
Leases (`kube-node-lease`, 40 s) behind, held by its own identity; the kwok that
`start_apiserver` starts has another identity, finds the Leases held and only takes the
nodes over when they expire: until then no pod turns Ready, so the first `helm --wait`
on the cluster after an outage waited 30-40 s (measured in the faults tests' operator log:
a one-Deployment install took 0.3 s on a live cluster, 28-40 s on the restarted one).

`stop_apiserver(cluster)` removes those Leases between kwok's stop and the apiserver's:
the next kwok creates them at once. The outage itself is the same (the port refuses
connections until `cluster.start_apiserver()`).

Callers: `e2e/test_operator.py`, `e2e/test_operator_faults.py`,
`e2e/test_rollout_recovery.py`.
"""

from __future__ import annotations

from e2e.testbed.controlplane import FAKE_NODES
from e2e.testbed.controlplane import Cluster as BedCluster

NODE_LEASES = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"


def stop_apiserver(cluster: BedCluster) -> None:
    """`cluster.stop_apiserver()`, leaving no kwok node Lease for the next kwok to wait out."""
    if cluster.shape.pods:
        cluster.kwok.stop()
        for node in FAKE_NODES:
            response = cluster.api.request("DELETE", f"{NODE_LEASES}/{node}")
            assert response.status in (200, 404), (node, response.status, response.body)
    cluster.stop_apiserver()
