"""What the peer benchmark measures around one tool's pass: CPU, peak RSS, API requests.

Callers: `benchmarks/_peers_tools.py` (a `Window` around each deploy and no-op pass) and
`benchmarks/peers.py` (the table). Pure reading of what the kernel and the test bed write:

- CPU: a command-line tool (herd apply, helmfile and the helm it starts) is a waited-for
  child of this process, so `getrusage(RUSAGE_CHILDREN)` before and after counts all of
  it; a controller (herd operator, Flux's two) runs throughout, so its whole process tree
  is read from /proc (its own time, its reaped children's, and its live children's).
  The downstream API servers' CPU is read from /proc as well.
- Peak RSS: the sum over the tool's process trees, sampled every 50 ms.
- Downstream API requests: the downstream API servers' audit logs
  (`e2e.testbed.components.Shape(audit=True)`), one event per request, by the identity
  every tool uses there (the test bed's admin kubeconfig), except the bed's own (kwok's).
  `e2e.testbed.counting` counts a Python client's requests in-process; these tools are
  other processes, so the audit log is the count here, as in `benchmarks/scale.py`.
"""

from __future__ import annotations

import os
import resource
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import benchmarks._scale_measure as measure

from e2e.testbed.certs import ADMIN_USER
from e2e.testbed.controlplane import Cluster

# The test bed's own requests as admin: kwok (the fake kubelet: leases, pod status) and
# the bed's Python helper, which sends no user agent (readiness, nodes).
NOT_A_TOOL = ("kwok", "")


@dataclass
class Figures:
    """One tool's pass (a deploy or a no-op) over one case."""

    wall: float = 0.0
    tool_cpu: float = 0.0  # the tool and the helm it ran
    api_cpu: float = 0.0  # the downstream API servers, less what they use idle
    management_cpu: float = 0.0  # the management API server (controllers only)
    peak_rss: int = 0  # bytes, the tool's processes together
    window: tuple[float, float] = (0.0, 0.0)  # epoch seconds, for the audit logs
    requests: int = -1  # downstream API requests, counted from the audit logs at the end
    agents: dict[str, int] = field(default_factory=dict)  # the same, by user agent program

    @property
    def total_cpu(self) -> float:
        """Tool plus helm plus downstream API servers (the issue's total)."""
        return self.tool_cpu + self.api_cpu


def children(pid: int) -> list[int]:
    """Live child processes of `pid` (every thread's children)."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            found += [int(c) for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
        except OSError:
            continue
    return found


def tree(pid: int) -> list[int]:
    """`pid` and every live descendant."""
    pids, queue = [], [pid]
    while queue:
        current = queue.pop()
        pids.append(current)
        queue += children(current)
    return pids


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process tree: each live member's own time and its reaped children's."""
    total = 0.0
    for member in tree(pid):
        try:
            total += measure.cpu_seconds(member, children=True)
        except OSError:
            continue  # exited between the listing and the read
    return total


def tree_rss(pids: Iterable[int]) -> int:
    total = 0
    for root in pids:
        for member in tree(root):
            try:
                total += measure.memory(member)[0]
            except OSError:
                continue
    return total


def reaped_children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Window:
    """CPU and peak RSS of one pass, from `start` to `stop`.

    `roots` returns the pids of the tool's processes now (the command-line tool's while it
    runs, or the controllers'); `controllers` says whether their CPU is read from /proc
    (long-running) or from RUSAGE_CHILDREN (command-line tools, reaped before `stop`).
    """

    downstream: list[Cluster]
    management: Cluster
    roots: Callable[[], list[int]]
    controllers: bool
    idle: float = 0.0  # CPU-s per second the downstream API servers use with no tool
    figures: Figures = field(default_factory=Figures)

    def start(self) -> Window:
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._began = time.time()
        self._api = self._apiservers()
        self._mgmt = self._cpu(self.management)
        self._tool = self._tool_cpu()
        self._sampler.start()
        return self

    def stop(self) -> Figures:
        ended = time.time()
        self.figures.tool_cpu = self._tool_cpu() - self._tool
        self._stop.set()
        self._sampler.join()
        self.figures.wall = ended - self._began
        self.figures.api_cpu = self._apiservers() - self._api - self.idle * self.figures.wall
        self.figures.management_cpu = self._cpu(self.management) - self._mgmt
        self.figures.window = (self._began, ended)
        return self.figures

    def _tool_cpu(self) -> float:
        if not self.controllers:
            return reaped_children_cpu()
        return sum(tree_cpu(pid) for pid in self.roots())

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.figures.peak_rss = max(self.figures.peak_rss, tree_rss(self.roots()))
            self._stop.wait(0.05)

    def _apiservers(self) -> float:
        return apiservers_cpu(self.downstream)

    @staticmethod
    def _cpu(cluster: Cluster) -> float:
        pid = cluster.apiserver.pid
        return measure.cpu_seconds(pid) if pid is not None else 0.0


def apiservers_cpu(clusters: list[Cluster]) -> float:
    return sum(measure.cpu_seconds(c.apiserver.pid) for c in clusters if c.apiserver.pid)


def idle_rate(clusters: list[Cluster], seconds: float = 10.0) -> float:
    """CPU-s per second the API servers of `clusters` use while no tool runs (their
    controllers, kwok's leases): subtracted from each pass, so a slow pass is not charged
    for the test bed's own work."""
    before = apiservers_cpu(clusters)
    time.sleep(seconds)
    return (apiservers_cpu(clusters) - before) / seconds


def count_requests(downstream: list[Cluster], passes: Iterable[Figures]) -> None:
    """Fill each pass's `requests` from the downstream audit logs (read once, at the end,
    so that requests still being answered when a window closed are in the log)."""
    logged = [
        r
        for cluster in downstream
        for r in measure.requests(cluster.audit_log, ADMIN_USER)
        if r.agent not in NOT_A_TOOL
    ]
    for figures in passes:
        inside = [r.agent for r in measure.between(logged, *figures.window)]
        figures.requests = len(inside)
        figures.agents = dict(Counter(inside).most_common())
