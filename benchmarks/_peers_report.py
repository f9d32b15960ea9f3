"""The peer benchmark's output: the machine line and one Markdown table per case and
cluster count, with the ratios against the peers and the issue's targets.

Callers: `benchmarks/peers.py`. Pure: figures in, text out.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from benchmarks._peers_measure import Figures

MIB = 1024 * 1024
HERD = ("herd apply", "herd operator")
PEERS = ("helmfile", "flux")
WALL_TARGET = 0.8  # Herd's wall time against the fastest peer
NOOP_TARGET = 0.10  # Herd's no-op CPU against Flux's


@dataclass(frozen=True)
class Result:
    case: str
    clusters: int
    charts: int
    tool: str
    deploy: Figures
    noops: tuple[Figures, ...]  # one or more no-op passes, one after the other

    @property
    def noop(self) -> Figures:
        """The median no-op pass by total CPU (a sub-second pass is in the machine's noise)."""
        return sorted(self.noops, key=lambda f: f.total_cpu)[(len(self.noops) - 1) // 2]

    @property
    def passes(self) -> tuple[Figures, ...]:
        return self.deploy, *self.noops


def machine() -> str:
    model = "?"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as info:
        total = int(info.readline().split()[1]) // 1024 // 1024
    load = os.getloadavg()
    return (
        f"machine: {os.cpu_count()} cores ({model}), {total} GiB; "
        f"load average at start {load[0]:.1f} (other work shares the cores)"
    )


def _row(r: Result, fastest: float, cheapest: float) -> str:
    d, n = r.deploy, r.noop
    wall = f"{d.wall / fastest:.2f}x" if fastest else "-"
    cpu = f"{d.total_cpu / cheapest:.2f}x" if cheapest else "-"
    management = f"{d.management_cpu:.1f}" if r.tool in ("herd operator", "flux") else "-"
    return (
        f"| {r.tool} | {d.wall:.2f} | {wall} | {d.tool_cpu:.1f} | {d.api_cpu:.1f} | "
        f"{d.total_cpu:.1f} | {cpu} | {management} | {d.peak_rss / MIB:.0f} | {d.requests} | "
        f"{n.wall:.2f} | {n.total_cpu:.2f} | {n.requests} |"
    )


def _targets(rows: dict[str, Result], fastest: float, cheapest: float) -> list[str]:
    lines = []
    flux = rows.get("flux")
    for name in HERD:
        r = rows.get(name)
        if r is None:
            continue
        checks = []
        if fastest:
            ratio = r.deploy.wall / fastest
            checks.append(f"wall {ratio:.2f}x {'met' if ratio <= WALL_TARGET else 'NOT met'}")
        if cheapest:
            ratio = r.deploy.total_cpu / cheapest
            checks.append(f"CPU {ratio:.2f}x {'met' if ratio <= 1 else 'NOT met'}")
        if flux is not None and flux.noop.total_cpu:
            share = r.noop.total_cpu / flux.noop.total_cpu
            checks.append(
                f"no-op {100 * share:.0f}% of Flux's {'met' if share <= NOOP_TARGET else 'NOT met'}"
            )
        lines.append(f"- {name}: " + "; ".join(checks))
    return lines


def report(results: list[Result]) -> None:
    groups: dict[tuple[str, int], dict[str, Result]] = {}
    for r in results:
        groups.setdefault((r.case, r.clusters), {})[r.tool] = r
    for (case, clusters), rows in groups.items():
        peers = [rows[p] for p in PEERS if p in rows]
        fastest = min((p.deploy.wall for p in peers), default=0.0)
        cheapest = min((p.deploy.total_cpu for p in peers), default=0.0)
        charts = next(iter(rows.values())).charts
        print(
            f"\n### {case}, {clusters} clusters x {charts} charts ({clusters * charts} releases)\n"
        )
        print(
            "| tool | wall s | vs fastest peer | tool+helm CPU-s | downstream API CPU-s (net) | "
            "total CPU-s | vs lowest peer | mgmt API CPU-s | peak RSS MiB | downstream requests "
            "| no-op wall s | no-op CPU-s | no-op requests |"
        )
        print("|" + "---|" * 13)
        for r in rows.values():
            print(_row(r, fastest, cheapest))
        print(
            f"\nTargets (wall <= {WALL_TARGET}x fastest peer, CPU <= lowest peer, no-op <= "
            f"{100 * NOOP_TARGET:.0f}% of Flux's):"
        )
        for line in _targets(rows, fastest, cheapest):
            print(line)
        print("\nDownstream requests by user agent (deploy; median no-op):")
        for r in rows.values():
            print(f"- {r.tool}: {_agents(r.deploy)}; {_agents(r.noop)}")
        print("\nNo-op passes (wall s / tool+helm CPU-s + downstream API CPU-s / requests):")
        for r in rows.values():
            each = ", ".join(
                f"{n.wall:.2f}/{n.tool_cpu:.2f}+{n.api_cpu:.2f}/{n.requests}" for n in r.noops
            )
            print(f"- {r.tool}: {each}")


def _agents(figures: Figures) -> str:
    return ", ".join(f"{agent} {n}" for agent, n in figures.agents.items()) or "none"
