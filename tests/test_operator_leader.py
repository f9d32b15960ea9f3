"""Leader election decisions (`herd.operator.leader`) and shard settings: pure, table-tested."""

from __future__ import annotations

from datetime import UTC, datetime

import kopf
import pytest

from herd.names import SHARD_LABEL
from herd.operator.config import OperatorConfig
from herd.operator.handlers import finalizer, shard_filter
from herd.operator.leader import (
    LeaseRecord,
    Observation,
    Verdict,
    decide,
    lease_name,
    lease_spec,
    observe,
    still_leading,
)

ME = "pod-a_12_abc123"
OTHER = "pod-b_34_def456"


def record(holder: str = OTHER, renewed: str = "t1", transitions: int = 0) -> LeaseRecord:
    return LeaseRecord(holder, 15.0, "t0", renewed, transitions, "7")


@pytest.mark.parametrize(
    ("observation", "now", "verdict"),
    [
        (None, 0.0, Verdict.CREATE),
        (Observation(record(ME), 0.0), 100.0, Verdict.RENEW),  # ours, even if old
        (Observation(record(""), 10.0), 10.0, Verdict.ACQUIRE),  # released
        (Observation(record(OTHER), 10.0), 10.0, Verdict.WAIT),  # just seen
        (Observation(record(OTHER), 10.0), 24.9, Verdict.WAIT),  # not yet expired
        (Observation(record(OTHER), 10.0), 25.0, Verdict.ACQUIRE),  # unchanged for 15 s
    ],
)
def test_decide(observation: Observation | None, now: float, verdict: Verdict) -> None:
    assert decide(observation, ME, now) is verdict


@pytest.mark.parametrize(
    ("before", "after", "since"),
    [
        (None, record(renewed="t1"), 50.0),  # first sight
        (Observation(record(renewed="t1"), 10.0), record(renewed="t1"), 10.0),  # unchanged
        (Observation(record(renewed="t1"), 10.0), record(renewed="t2"), 50.0),  # renewed
        (Observation(record(OTHER), 10.0), record(ME), 50.0),  # new holder
        (Observation(record(transitions=1), 10.0), record(transitions=2), 50.0),
    ],
)
def test_observe_keeps_the_first_sight_of_an_unchanged_record(
    before: Observation | None, after: LeaseRecord, since: float
) -> None:
    assert observe(before, after, 50.0).since == since


def test_expiry_uses_the_local_clock_not_the_holders_timestamps() -> None:
    # A renew time far in the past (a skewed holder clock) does not expire the Lease:
    # only 15 s of seeing it unchanged does.
    stale = LeaseRecord(OTHER, 15.0, "2000-01-01T00:00:00.000000Z", "2000-01-01T00:00:00.000000Z")
    seen = observe(None, stale, 100.0)
    assert decide(seen, ME, 101.0) is Verdict.WAIT
    assert decide(observe(seen, stale, 115.0), ME, 115.0) is Verdict.ACQUIRE


NOW = datetime(2026, 12, 1, 9, 30, 0, 123456, tzinfo=UTC)
STAMP = "2026-12-01T09:30:00.123456Z"


@pytest.mark.parametrize(
    ("before", "verdict", "acquired", "transitions"),
    [
        (None, Verdict.CREATE, STAMP, 0),
        (record(ME, transitions=3), Verdict.RENEW, "t0", 3),  # keeps acquire time
        (record(OTHER, transitions=3), Verdict.ACQUIRE, STAMP, 4),  # a new holder
        (record("", transitions=3), Verdict.ACQUIRE, STAMP, 4),  # released, handed over
    ],
)
def test_lease_spec(
    before: LeaseRecord | None, verdict: Verdict, acquired: str, transitions: int
) -> None:
    spec = lease_spec(before, ME, verdict, 15.0, NOW)
    assert spec == {
        "holderIdentity": ME,
        "leaseDurationSeconds": 15,
        "acquireTime": acquired,
        "renewTime": STAMP,
        "leaseTransitions": transitions,
    }


@pytest.mark.parametrize(
    ("since_renewal", "leading"),
    [(0.0, True), (5.0, True), (9.9, True), (10.0, False), (30.0, False)],
)
def test_the_leader_gives_up_before_a_standby_may_acquire(
    since_renewal: float, leading: bool
) -> None:
    assert still_leading(100.0, 100.0 + since_renewal, 15.0) is leading


def test_record_from_a_lease_body() -> None:
    body = {
        "metadata": {"resourceVersion": "42"},
        "spec": {
            "holderIdentity": OTHER,
            "leaseDurationSeconds": 15,
            "acquireTime": "a",
            "renewTime": "r",
            "leaseTransitions": 2,
        },
    }
    assert LeaseRecord.from_body(body) == LeaseRecord(OTHER, 15.0, "a", "r", 2, "42")
    assert LeaseRecord.from_body({"metadata": {}, "spec": {}}).holder == ""


@pytest.mark.parametrize(
    ("shard", "name", "labels", "finalizer_name"),
    [
        ("", "herd-controller", {SHARD_LABEL: kopf.ABSENT}, "herd.suse.com/finalizer"),
        (
            "gpu-eu",
            "herd-controller-gpu-eu",
            {SHARD_LABEL: "gpu-eu"},
            "herd.suse.com/finalizer-gpu-eu",
        ),
        (
            "a" * 53,
            "herd-controller-" + "a" * 53,
            {SHARD_LABEL: "a" * 53},
            "herd.suse.com/finalizer-" + "a" * 53,
        ),
    ],
)
def test_each_shard_has_its_lease_finalizer_and_stacks(
    shard: str, name: str, labels: dict[str, object], finalizer_name: str
) -> None:
    assert lease_name(shard) == name
    assert shard_filter(shard) == labels
    assert finalizer(shard) == finalizer_name
    assert len(finalizer(shard).split("/")[1]) <= 63
    assert OperatorConfig.from_env({"HERD_SHARD": shard}).shard == shard


@pytest.mark.parametrize("raw", ["GPU", "a_b", "-a", "a-", "a" * 54, "a.b"])
def test_a_shard_must_fit_a_label_value_and_a_lease_name(raw: str) -> None:
    with pytest.raises(ValueError, match="HERD_SHARD"):
        OperatorConfig.from_env({"HERD_SHARD": raw})


def test_ha_settings_from_the_environment() -> None:
    config = OperatorConfig.from_env(
        {"HERD_SHARD": " gpu ", "HERD_LEASE_SECONDS": "9", "HERD_SHUTDOWN_SECONDS": "300"}
    )
    assert (config.shard, config.lease_seconds, config.shutdown_seconds) == ("gpu", 9.0, 300.0)
    default = OperatorConfig.from_env({})
    assert (default.shard, default.lease_seconds) == ("", 15.0)


def test_a_holder_known_gone_is_taken_over_at_once() -> None:
    seen = Observation(record(OTHER), 10.0)
    assert decide(seen, ME, 10.0, gone=OTHER) is Verdict.ACQUIRE  # no Lease duration
    assert decide(seen, ME, 10.0, gone="pod-c_56_0a0b0c") is Verdict.WAIT
    assert decide(seen, ME, 10.0) is Verdict.WAIT
    assert decide(Observation(record(ME), 0.0), ME, 1.0, gone=ME) is Verdict.RENEW
