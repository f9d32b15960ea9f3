"""The part of a chart's values that depends on the cluster: `values.clusters` overrides and
templated strings (`values.templated`, `herd.plan.templating`). Pure.

`rendered_layers` gives, for one cluster, `values.inline`, `values.envs[spec.env]` and each
`values.clusters` entry that selects the cluster (in list order), lowest first, for
`herd.plan.desired` to merge. With `templated: true` each layer is rendered with the cluster's
facts first, so an error names the layer and the value path. `herd.plan.desired` merges
`values.from` over them (never templated: Secret content is data, not a template) and
hashes the rendered values per cluster, so a change to one cluster's labels upgrades only
that cluster. The whole merge order is documented once, in `herd.plan.desired`.

`spec_problems` finds, before any cluster is contacted, malformed templates (only of charts
that are templated). A cluster lacking a fact raises `ClusterValuesError` for that
cluster's release only.

Callers: `herd.plan.desired`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from herd.api.charts import ChartSpec, ClusterOverride
from herd.api.v1 import StackSpec
from herd.errors import PermanentError, Problem
from herd.plan.clusters import Cluster
from herd.plan.targets import selector_matches
from herd.plan.templating import UnknownVariable, check_values, facts, render_values


class ClusterValuesError(PermanentError):
    """A chart's values cannot be rendered for one cluster (a fact it lacks)."""


def selects(override: ClusterOverride, cluster: Cluster) -> bool:
    """True when the entry names the cluster (by id or name) or its selector matches."""
    if cluster.id in override.cluster_ids or cluster.name in override.cluster_ids:
        return True
    return override.selector is not None and selector_matches(override.selector, cluster.labels)


def layers(chart: ChartSpec, env: str, cluster: Cluster) -> list[tuple[str, Mapping[str, Any]]]:
    """(where, values) of every layer that applies to `cluster`, lowest first."""
    found: list[tuple[str, Mapping[str, Any]]] = [("values.inline", chart.values.inline)]
    if env in chart.values.envs:
        found.append((f"values.envs.{env}", chart.values.envs[env]))
    found += [
        (f"values.clusters[{k}].inline", override.inline)
        for k, override in enumerate(chart.values.clusters)
        if selects(override, cluster)
    ]
    return found


def rendered_layers(chart: ChartSpec, env: str, cluster: Cluster) -> list[Mapping[str, Any]]:
    """The layers of `layers`, each rendered with the cluster's facts when templated.

    Raises `ClusterValuesError` naming the chart, the value path and the variable."""
    if not chart.values.templated:
        return [values for _, values in layers(chart, env, cluster)]
    known = facts(cluster)
    try:
        return [render_values(v, known, where) for where, v in layers(chart, env, cluster)]
    except UnknownVariable as unknown:
        raise ClusterValuesError(
            f"chart {chart.name}: {unknown.path} uses {{{{ {unknown.variable} }}}}, "
            f"but cluster {cluster} has no {_fact_kind(unknown.variable)}"
        ) from None


def follows_facts(spec: StackSpec) -> bool:
    """True when a cluster's labels or name may change the Stack's values there."""
    return any(c.values.clusters or c.values.templated for c in spec.charts)


def spec_problems(spec: StackSpec) -> list[Problem]:
    """Malformed templates of templated charts, located at the value."""
    problems = []
    for i, chart in enumerate(spec.charts):
        if not chart.values.templated:
            continue
        trees: list[tuple[str, Any]] = [("values.inline", chart.values.inline)]
        trees += [(f"values.envs.{e}", v) for e, v in chart.values.envs.items()]
        trees += [
            (f"values.clusters[{k}].inline", o.inline) for k, o in enumerate(chart.values.clusters)
        ]
        for where, tree in trees:
            problems += [
                Problem(f"spec.charts[{i}].{path}", text)
                for path, text in check_values(tree, where)
            ]
    return problems


def _fact_kind(variable: str) -> str:
    name = variable.removeprefix(".Cluster.")
    if name.startswith("labels."):
        return f"label {name.removeprefix('labels.')!r}"
    return f"fact {name!r}"
