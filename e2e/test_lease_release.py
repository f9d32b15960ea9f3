"""The Lease hand-over on a real API server, when a renewal of the leader's lands late.

The leader renews in a thread (`LeaderElector._call`); at a clean stop its renewal task is
cancelled, but a renewal already in that thread still writes. It moves the Lease's
resourceVersion past the one the hand-over carries, so the hand-over conflicts (409).
Before the fix the leader gave up there ("Could not release Lease") and a standby waited
for the whole Lease duration. Here the late renewal is a real write of the leader's own
term, made between its last observation and `release()`; the hand-over must still go
through, and must never overwrite another holder's term.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

from kubernetes import client

from e2e.testbed.controlplane import Cluster as BedCluster
from herd.kube.client import api_client_from_kubeconfig
from herd.operator.leader import LeaderElector, LeaseRecord, Verdict, decide, observe

NAMESPACE = "default"
DURATION = 15.0


def late_renewal(leases: client.CoordinationV1Api, name: str, holder: str) -> None:
    """A renewal of `holder`'s term written behind the elector's back (a new version)."""
    lease = leases.read_namespaced_lease(name, NAMESPACE)
    lease.spec.holder_identity = holder
    lease.spec.renew_time = datetime.now(UTC)
    leases.replace_namespaced_lease(name, NAMESPACE, lease)


def holder(leases: client.CoordinationV1Api, name: str) -> str:
    return leases.read_namespaced_lease(name, NAMESPACE).spec.holder_identity or ""


async def leading(api: client.ApiClient, name: str, me: str) -> LeaderElector:
    elector = LeaderElector(api, NAMESPACE, name, me, DURATION)
    await asyncio.wait_for(elector.acquire(), 30)
    return elector


def test_a_hand_over_after_a_late_renewal_still_releases_the_lease(
    management: BedCluster,
) -> None:
    api = api_client_from_kubeconfig(management.kubeconfig)
    leases = client.CoordinationV1Api(api)
    name = f"herd-release-{uuid.uuid4().hex[:6]}"

    async def scenario() -> None:
        elector = await leading(api, name, "leader-a")
        late_renewal(leases, name, "leader-a")  # lands after the elector's last read
        await elector.release()
        assert holder(leases, name) == "", "the hand-over conflicted and was given up"
        # A standby's next try takes it at once: released, not waiting for expiry.
        body = api.sanitize_for_serialization(leases.read_namespaced_lease(name, NAMESPACE))
        assert decide(observe(None, LeaseRecord.from_body(body), 0.0), "b", 0.0) is Verdict.ACQUIRE
        standby = await leading(api, name, "standby-b")
        assert holder(leases, name) == "standby-b"
        await standby.release()

    try:
        asyncio.run(scenario())
    finally:
        leases.delete_namespaced_lease(name, NAMESPACE)


def test_a_hand_over_never_overwrites_another_holders_term(management: BedCluster) -> None:
    api = api_client_from_kubeconfig(management.kubeconfig)
    leases = client.CoordinationV1Api(api)
    name = f"herd-release-{uuid.uuid4().hex[:6]}"

    async def scenario() -> None:
        elector = await leading(api, name, "leader-a")
        late_renewal(leases, name, "leader-b")  # another process's term began meanwhile
        await elector.release()
        assert holder(leases, name) == "leader-b"

    try:
        asyncio.run(scenario())
    finally:
        leases.delete_namespaced_lease(name, NAMESPACE)
