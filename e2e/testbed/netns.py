"""Hosts of the test's own: a network namespace joined to this one by a veth pair.

Callers: `e2e/test_addons.py`, `e2e/test_gpu.py` and `e2e/test_prometheus.py`, whose
NeuVector stand-in, DCGM stand-in and Prometheus must be reached through a cluster's API
server service proxy (fixtures enter one with `host_or_skip`). The proxy refuses
loopback endpoints, and test traffic may go only to loopback or to hosts the test made
itself, never to this machine's real interfaces. So the stand-in runs in a namespace of
its own: a veth pair links it to the root namespace, on a /30 drawn from 198.18.0.0/15
(RFC 2544, reserved for benchmarking and never routed). The namespace has no other
interface and no default route, so nothing in it can reach anywhere else either.

`netns_host(prefix)` makes one and yields a `NetnsHost`: `.address` is its end of the
pair, `.popen(argv)` starts a process inside it. On exit, also after a failure, it kills
every process in the namespace, then deletes the pair and the namespace, and checks they
are gone. Needs root and iproute2's `ip`; without them it raises `NetnsUnavailable`, and
the caller decides whether that skips or fails.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

BENCHMARK_NETWORK = ipaddress.IPv4Network("198.18.0.0/15")
_PREFIX = 30
_STOP_GRACE_SECONDS = 5.0
_random = random.SystemRandom()


class NetnsUnavailable(RuntimeError):
    """This machine (or this user) cannot make network namespaces."""


class NetnsError(RuntimeError):
    """Cleanup left a namespace or an interface behind."""


@dataclass
class NetnsHost:
    """One namespace and the veth pair into it."""

    namespace: str
    veth: str  # the root namespace's end
    peer: str  # the end inside the namespace
    address: str = ""  # inside the namespace: servers listen here
    gateway: str = ""  # the root namespace's end: the namespace sees packets come from it
    _processes: list[subprocess.Popen[Any]] = field(default_factory=list, repr=False)

    def command(self, argv: Sequence[str]) -> list[str]:
        """`argv` run inside the namespace (`ip netns exec` execs it: no extra process)."""
        return ["ip", "netns", "exec", self.namespace, *argv]

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start `argv` inside the namespace; it is killed when the host goes away."""
        process = subprocess.Popen(self.command(argv), **kwargs)
        self._processes.append(process)
        return process


def host_or_skip(stack: contextlib.ExitStack, name_prefix: str, what: str) -> NetnsHost:
    """`netns_host(name_prefix)` entered on `stack`, for a test fixture serving `what`:
    without namespaces the test skips, and fails in CI (`CI=true`), where they must work."""
    try:
        return stack.enter_context(netns_host(name_prefix))
    except NetnsUnavailable as error:
        message = f"no network namespace for {what}: {error}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)


@contextlib.contextmanager
def netns_host(name_prefix: str) -> Iterator[NetnsHost]:
    """A fresh namespace `<name_prefix>-<random>` with a veth pair into it, for one use."""
    _check_usable()
    token = secrets.token_hex(4)
    # Interface names have at most 15 characters; "herd" says whose they are.
    host = NetnsHost(f"{name_prefix}-{token}", veth=f"herd{token}h", peer=f"herd{token}n")
    try:
        _set_up(host)
        yield host
    finally:
        _tear_down(host)


def _check_usable() -> None:
    if os.geteuid() != 0:
        raise NetnsUnavailable("making a network namespace needs root")
    if shutil.which("ip") is None:
        raise NetnsUnavailable("iproute2's `ip` is missing (apt-get install -y iproute2)")


def _set_up(host: NetnsHost) -> None:
    try:
        _ip("netns", "add", host.namespace)
        _ip("link", "add", host.veth, "type", "veth",
            "peer", "name", host.peer, "netns", host.namespace)  # fmt: skip
        subnet = _free_subnet()
        gateway, address = (f"{ip}/{_PREFIX}" for ip in list(subnet.hosts())[:2])
        _ip("addr", "add", gateway, "dev", host.veth)
        _ip("link", "set", host.veth, "up")
        _ip("-n", host.namespace, "addr", "add", address, "dev", host.peer)
        _ip("-n", host.namespace, "link", "set", host.peer, "up")
        _ip("-n", host.namespace, "link", "set", "lo", "up")
    except subprocess.CalledProcessError as error:
        raise NetnsUnavailable(
            f"`{' '.join(error.cmd)}` failed: {error.stderr.strip() or error.returncode}"
        ) from error
    host.gateway, host.address = gateway.split("/")[0], address.split("/")[0]


def _free_subnet() -> ipaddress.IPv4Network:
    """A random /30 of the benchmark range that no address or route here overlaps.

    Random, not the first free one, so two sessions setting up at once rarely collide.
    """
    used = _networks_in_use()
    for _ in range(100):
        index = _random.randrange(2 ** (_PREFIX - BENCHMARK_NETWORK.prefixlen))
        subnet = ipaddress.IPv4Network(
            (int(BENCHMARK_NETWORK.network_address) + index * 2 ** (32 - _PREFIX), _PREFIX)
        )
        if not any(subnet.overlaps(network) for network in used):
            return subnet
    raise NetnsUnavailable(f"no free /{_PREFIX} in {BENCHMARK_NETWORK}")


def _networks_in_use() -> list[ipaddress.IPv4Network]:
    links = json.loads(_ip("-j", "-4", "addr", "show"))
    routes = json.loads(_ip("-j", "-4", "route", "show", "table", "all"))
    networks = [
        ipaddress.IPv4Interface(f"{info['local']}/{info['prefixlen']}").network
        for link in links
        for info in link.get("addr_info", [])
    ]
    networks += [
        ipaddress.IPv4Network(route["dst"], strict=False)
        for route in routes
        if route.get("dst", "default") != "default"
    ]
    return networks


def _tear_down(host: NetnsHost) -> None:
    """Kill, then delete; safe to run twice, and after a set-up that stopped half-way."""
    for process in host._processes:
        _stop(process)
    host._processes.clear()
    if _namespace_exists(host.namespace):
        # Anything else still in there (a child of a child) was started by us, too.
        for pid in _ip("netns", "pids", host.namespace, check=False).split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
    if _link_exists(host.veth):
        _ip("link", "del", host.veth, check=False)  # takes its peer with it
    if _namespace_exists(host.namespace):
        _ip("netns", "del", host.namespace, check=False)
    left = [name for name in (host.veth,) if _link_exists(name)]
    left += [name for name in (host.namespace,) if _namespace_exists(name)]
    if left:
        raise NetnsError(f"could not delete {', '.join(left)}")


def _stop(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=_STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    for stream in (process.stdin, process.stdout, process.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


def _namespace_exists(name: str) -> bool:
    listed = json.loads(_ip("-j", "netns", "list", check=False) or "[]")
    return any(entry.get("name") == name for entry in listed)


def _link_exists(name: str) -> bool:
    shown = subprocess.run(["ip", "link", "show", "dev", name], capture_output=True, check=False)
    return shown.returncode == 0


def _ip(*args: str, check: bool = True) -> str:
    return subprocess.run(
        ["ip", *args], capture_output=True, text=True, check=check, timeout=30
    ).stdout
