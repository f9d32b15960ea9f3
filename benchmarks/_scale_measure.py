"""What the scale benchmark measures outside Herd: audit-log requests, process memory.

Callers: `benchmarks/scale.py`. Pure reading of files the kernel and the management API
server write: `/proc/<pid>/status` (VmRSS, VmHWM) and the apiserver's JSON audit log
(`e2e.testbed.components.Shape(audit=True)`), where every request the controller's
ServiceAccount makes is one event with a unique `auditID`. Counting those is counting
real requests, not estimating them.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from e2e.testbed.controlplane import Cluster

CONTROLLER_USER = "system:serviceaccount:herd-system:herd-controller"
MIB = 1024 * 1024


@dataclass(frozen=True)
class Audited:
    """One request of the audit log."""

    at: float  # epoch seconds the request was received
    verb: str
    resource: str
    subresource: str
    name: str
    agent: str = ""  # the user agent's program (`Helm`, `kwok`, ...)

    def __str__(self) -> str:
        sub = f"/{self.subresource}" if self.subresource else ""
        return f"{self.verb} {self.resource}{sub}{' ' + self.name if self.name else ''}"


def requests(log: Path, user: str = CONTROLLER_USER) -> list[Audited]:
    """Every request `user` made, once each (the stages of one request share an auditID)."""
    seen: dict[str, Audited] = {}
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return []
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue  # a line being written
        if (event.get("user") or {}).get("username") != user or event["auditID"] in seen:
            continue
        ref = event.get("objectRef") or {}
        received = datetime.fromisoformat(event["requestReceivedTimestamp"]).timestamp()
        seen[event["auditID"]] = Audited(
            received,
            event.get("verb", ""),
            ref.get("resource", event.get("requestURI", "")),
            ref.get("subresource", ""),
            ref.get("name", ""),
            str(event.get("userAgent") or "").split("/", 1)[0],
        )
    return sorted(seen.values(), key=lambda r: r.at)


def between(found: Iterable[Audited], start: float, end: float) -> list[Audited]:
    return [r for r in found if start <= r.at <= end]


def summary(found: Iterable[Audited]) -> str:
    """`verb resource` counts, most frequent first (names dropped)."""
    counts = Counter(
        f"{r.verb} {r.resource}{'/' + r.subresource if r.subresource else ''}" for r in found
    )
    return ", ".join(f"{n}x {what}" for what, n in counts.most_common())


def memory(pid: int) -> tuple[int, int]:
    """(current, peak) resident set size of a process, in bytes."""
    values: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) * 1024
    return values.get("VmRSS", 0), values.get("VmHWM", 0)


def available_memory() -> int:
    """MemAvailable of the machine, in bytes."""
    with open("/proc/meminfo") as info:
        for line in info:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def cpu_seconds(pid: int, children: bool = False) -> float:
    """User + system CPU seconds of a process (with its waited-for children: helm)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    idle = values[3] + values[4]
    tick = os.sysconf("SC_CLK_TCK")
    return (sum(values) - idle) / tick, sum(values) / tick


def cluster_memory(clusters: list[Cluster]) -> tuple[float, float]:
    """Average (RSS, peak RSS) per downstream cluster, in MiB, all its processes together."""
    now = peak = 0
    for cluster in clusters:
        for process in cluster.processes:
            if process.pid is not None:
                rss, hwm = memory(process.pid)
                now, peak = now + rss, peak + hwm
    return now / len(clusters) / MIB, peak / len(clusters) / MIB
