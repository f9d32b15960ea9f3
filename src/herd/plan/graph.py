"""The chart dependency graph of a Stack: build it, check it, cut it into waves.

Pure (networkx, only to list cycles in an invalid Stack: importing it costs a quarter
second of the CLI's start-up). `herd.plan.desired` builds the graph once per Stack (add-on charts
included) and the rollout walks its waves; `herd validate` prints them. Every problem
is collected before anything is raised, so a user fixes a Stack in one round trip.
"""

from __future__ import annotations

from collections.abc import Sequence

from herd.api.charts import ChartSpec
from herd.errors import Problem, SpecError

_MAX_CYCLES_REPORTED = 5


class ChartGraph:
    """A checked DAG of charts; edges run from a dependency to its dependents."""

    def __init__(self, charts: Sequence[ChartSpec], *, field: str = "spec.charts") -> None:
        problems = check(charts, field=field)
        if problems:
            raise SpecError(problems)
        self.charts: dict[str, ChartSpec] = {c.name: c for c in charts}
        self._order = {c.name: i for i, c in enumerate(charts)}
        self._needs = _edges(charts)  # chart -> its direct dependencies (acyclic: checked)
        self._users: dict[str, set[str]] = {name: set() for name in self.charts}
        for name, needs in self._needs.items():
            for dep in needs:
                self._users[dep].add(name)

    def waves(self) -> list[list[str]]:
        """Topological generations: wave N holds charts whose dependencies are all earlier.

        Within a wave, charts keep the order the Stack lists them in, so output is stable.
        """
        waves: list[list[str]] = []
        placed: set[str] = set()
        while len(placed) < len(self.charts):
            wave = [n for n in self.charts if n not in placed and self._needs[n] <= placed]
            waves.append(wave)  # the Stack's order already
            placed.update(wave)
        return waves

    def dependencies(self, name: str) -> list[str]:
        """Direct dependencies of `name`, in Stack order."""
        return sorted(self._needs[name], key=self._order.__getitem__)

    def dependents(self, name: str) -> set[str]:
        """Every chart that depends on `name`, directly or transitively."""
        found: set[str] = set()
        todo = [name]
        while todo:
            for user in self._users[todo.pop()] - found:
                found.add(user)
                todo.append(user)
        return found

    def __len__(self) -> int:
        return len(self.charts)


def _edges(charts: Sequence[ChartSpec]) -> dict[str, set[str]]:
    """Chart -> the known charts it depends on (itself and unknown names left out)."""
    names = {c.name for c in charts}
    return {c.name: {d for d in c.depends_on if d in names and d != c.name} for c in charts}


def _has_cycle(needs: dict[str, set[str]]) -> bool:
    """Kahn's algorithm: a cycle is what never becomes free of dependencies."""
    left = {name: set(deps) for name, deps in needs.items()}
    while True:
        free = [name for name, deps in left.items() if not deps]
        if not free:
            return bool(left)
        for name in free:
            del left[name]
        for deps in left.values():
            deps.difference_update(free)


def check(charts: Sequence[ChartSpec], *, field: str = "spec.charts") -> list[Problem]:
    """Every graph problem: duplicates, unknown or self dependencies, clashes, cycles."""
    problems: list[Problem] = []
    first_by_name: dict[str, int] = {}
    first_by_release: dict[tuple[str, str], int] = {}
    for i, chart in enumerate(charts):
        where = f"{field}[{i}]"
        if chart.name in first_by_name:
            problems.append(
                Problem(
                    f"{where}.name",
                    f"duplicate chart name {chart.name!r} "
                    f"(also {field}[{first_by_name[chart.name]}])",
                )
            )
        else:
            first_by_name[chart.name] = i
        identity = (chart.namespace, chart.release)
        if identity in first_by_release:
            problems.append(
                Problem(
                    f"{where}.releaseName",
                    f"release {chart.namespace}/{chart.release} is also deployed by "
                    f"{field}[{first_by_release[identity]}]",
                )
            )
        else:
            first_by_release[identity] = i
    for i, chart in enumerate(charts):
        for k, dep in enumerate(chart.depends_on):
            where = f"{field}[{i}].dependsOn[{k}]"
            if dep == chart.name:
                problems.append(Problem(where, f"chart {chart.name!r} depends on itself"))
            elif dep not in first_by_name:
                problems.append(Problem(where, f"unknown chart {dep!r}"))
    problems.extend(_cycles(charts, field))
    return problems


def _cycles(charts: Sequence[ChartSpec], field: str) -> list[Problem]:
    needs = _edges(charts)
    if not _has_cycle(needs):
        return []
    import networkx as nx  # noqa: PLC0415 (only an invalid Stack pays for it)

    dag = nx.DiGraph()
    dag.add_nodes_from(needs)
    dag.add_edges_from((dep, name) for name, deps in needs.items() for dep in deps)
    order = {c.name: i for i, c in enumerate(charts)}
    problems: list[Problem] = []
    for found in nx.simple_cycles(dag):
        if len(problems) == _MAX_CYCLES_REPORTED:
            break
        # Edges run dependency -> dependent; read the cycle as "a depends on b".
        cycle = found[::-1]
        # Start at the chart listed first so the message is deterministic.
        start = min(range(len(cycle)), key=lambda k: order[cycle[k]])
        path = cycle[start:] + cycle[:start]
        problems.append(
            Problem(
                f"{field}[{order[path[0]]}].dependsOn",
                "dependency cycle " + " -> ".join([*path, path[0]]) + " (each depends on the next)",
            )
        )
    return sorted(problems)
