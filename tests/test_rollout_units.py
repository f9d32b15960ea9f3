"""Scheduling decisions and the process-wide gates, without helm (pure logic)."""

from __future__ import annotations

import asyncio
import base64
import tempfile
from pathlib import Path

import pytest
import yaml

from herd.api import StackSpec
from herd.helm.workdir import keep_temp_files_in, prepare
from herd.kube.client import api_client_from_kubeconfig
from herd.plan.desired import blocked_by, plan_stack
from herd.plan.releases import ReleaseKey
from herd.rollout.gates import DRAINING_MESSAGE, Draining, Gates

PLAN = plan_stack(
    StackSpec.model_validate(
        {
            "targets": {"clusterIds": ["c1"]},
            "charts": [
                {"name": n, "repo": "https://r", "version": "1", "dependsOn": d}
                for n, d in [
                    ("a", []),
                    ("b", ["a"]),
                    ("c", ["b"]),
                    ("slow", []),
                    ("d", ["a", "slow"]),
                ]
            ],
        }
    )
)


@pytest.mark.parametrize(
    ("chart", "states", "blocker"),
    [
        ("a", {}, ""),
        ("b", {"a": "Deployed"}, ""),
        ("b", {"a": "Failed"}, "dependency a failed"),
        ("c", {"b": "Skipped"}, "dependency b skipped"),
        ("c", {"b": "Pending"}, "dependency b pending"),
        # only its own dependencies count: the slow wave-mate does not hold b back
        ("b", {"a": "Deployed", "slow": "Deploying"}, ""),
        ("d", {"a": "Deployed", "slow": "Deployed"}, ""),
        ("d", {"a": "Deployed", "slow": "Unreachable"}, "dependency slow unreachable"),
    ],
)
def test_blocked_by(chart: str, states: dict[str, str], blocker: str) -> None:
    assert blocked_by(PLAN, chart, states) == blocker


def test_waves_stay_for_display() -> None:
    assert PLAN.waves == (("a", "slow"), ("b", "d"), ("c",))


async def test_drain_stops_operations_not_yet_started() -> None:
    gates = Gates(helm=1, clusters=1)
    started = asyncio.Event()
    finish = asyncio.Event()

    async def running() -> None:
        async with gates.slot():
            started.set()
            await finish.wait()

    async def waiting() -> str:
        try:
            async with gates.slot():
                return "ran"
        except Draining as draining:
            return str(draining)

    first = asyncio.create_task(running())
    await started.wait()
    second = asyncio.create_task(waiting())
    await asyncio.sleep(0)
    gates.drain()
    assert gates.draining
    idle = asyncio.create_task(gates.idle())
    await asyncio.sleep(0.01)
    assert not idle.done()  # helm still runs: not idle
    finish.set()
    await first
    assert await second == DRAINING_MESSAGE
    await asyncio.wait_for(idle, 1)
    with pytest.raises(Draining):
        async with gates.slot():
            pass


async def test_release_locks_are_per_release_and_visible() -> None:
    gates = Gates()
    key = ReleaseKey("c1", "ns", "a")
    assert not gates.holds(key)
    async with gates.release(key):
        assert gates.holds(key)
        assert not gates.holds(ReleaseKey("c2", "ns", "a"))
    assert not gates.holds(key)


def test_prepare_removes_what_an_earlier_run_left(tmp_path: Path) -> None:
    work = tmp_path / "work"
    (work / "kubeconfigs").mkdir(parents=True)
    (work / "kubeconfigs" / "c1.kubeconfig").write_text("secret")
    (work / "helm" / "cache").mkdir(parents=True)
    (work / "stray").write_text("x")
    assert prepare(work) == work.absolute()
    assert list(work.iterdir()) == []
    assert work.stat().st_mode & 0o777 == 0o700
    fresh = prepare(tmp_path / "new" / "dir")
    assert fresh.is_dir()


def test_prepare_refuses_symlinks_and_files(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    (tmp_path / "file").write_text("x")
    for bad in ("link", "file"):
        with pytest.raises(ValueError):
            prepare(tmp_path / bad)
    with pytest.raises(ValueError):
        prepare(Path("/"))


def test_the_kubernetes_client_writes_its_key_files_into_the_work_directory(
    tmp_path: Path,
) -> None:
    pem = base64.b64encode(b"-----BEGIN X-----\nnot a real key\n-----END X-----\n").decode()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "c",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [
                    {"name": "u", "user": {"client-certificate-data": pem, "client-key-data": pem}}
                ],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
            }
        )
    )
    before = tempfile.tempdir
    try:
        temp = keep_temp_files_in(tmp_path / "work" / "tmp")
        api_client_from_kubeconfig(kubeconfig).close()  # type: ignore[no-untyped-call]
        assert temp.stat().st_mode & 0o777 == 0o700
        assert list(temp.iterdir()), "the client's key files should be in the work directory"
    finally:
        tempfile.tempdir = before


async def test_a_paused_gate_starts_nothing_until_resumed() -> None:
    gates = Gates(helm=2, clusters=2)
    gates.pause()
    assert gates.draining
    with pytest.raises(Draining, match="leader Lease"):
        async with gates.slot():
            pass
    gates.resume()
    assert not gates.draining
    async with gates.slot():
        pass
    gates.drain()
    gates.resume()  # resuming never undoes a drain
    with pytest.raises(Draining, match="shutting down"):
        gates.check()
