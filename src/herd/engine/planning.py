"""The engine's checked plan: read what the Stack refers to, check it all, plan it.

`checked_plan` runs the grants' spec checks first (a refused Stack has nothing of its
read or templated), then reads `values.from` and the private chart sources (as the
Stack's `serviceAccountName` for bounded Stacks), adds the add-on charts, and plans
(`herd.plan.desired.plan_stack`). Every problem found, of any of these, is raised
together as one `SpecError`, before any helm call.

Callers: `herd.engine.engine` (`Engine.plan`, and each pass through it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from herd.api.charts import ChartSpec
from herd.api.v1 import Stack, StackSpec, Toggle
from herd.engine.protocols import AddOns, SourcesReader, ValuesReader
from herd.errors import Problem, SpecError
from herd.plan.chart_sources import ChartSource, unread_sources
from herd.plan.clusters import Cluster
from herd.plan.desired import StackPlan, plan_stack
from herd.plan.releases import Values
from herd.plan.tenancy import Grants, addon_namespace_problems, spec_problems


@dataclass(frozen=True)
class Readers:
    """Where a plan's inputs come from (each optional: the CLI may have none)."""

    values: ValuesReader | None = None
    sources: SourcesReader | None = None
    addons: AddOns | None = None


async def checked_plan(
    stack: Stack, clusters: Sequence[Cluster], grants: Grants | None, readers: Readers
) -> StackPlan:
    """The checked plan; raises SpecError with every problem found, values sources,
    grants and graph together. Reads `values.from` when a reader is set: as the Stack's
    `serviceAccountName` when it names one (required for bounded Stacks), except for
    admin Stacks and the CLI's `grants=None`, which read with the caller's identity."""
    problems: list[Problem] = []
    if grants is not None:
        problems += spec_problems(
            grants, stack.spec, service_account_name=stack.spec.service_account_name
        )
    if problems:  # refused by the grants: nothing of the tenant's is read or templated
        raise SpecError(sorted(set(problems)))
    from_values = None
    if readers.values is not None:
        admin = grants is None or grants.admin
        account = None if admin else stack.spec.service_account_name
        try:
            from_values = await readers.values.read(
                stack.namespace, stack.spec, service_account=account
            )
        except SpecError as error:
            problems += error.problems
    sources = await _chart_sources(stack, grants, readers.sources, problems)
    by_id = {c.id: c for c in clusters}
    addons = readers.addons
    if addons is not None and _enables_addons(stack.spec):
        await addons.refresh()  # reads the add-on configuration: only when it is needed

    def cluster_values(cluster_id: str, chart: ChartSpec) -> Values:
        if addons is None or cluster_id not in by_id:
            return {}
        return addons.cluster_values(by_id[cluster_id], chart)

    try:
        shared = addons.charts(stack.spec) if addons else []
        spec = stack.spec
        own = addons.stack_charts(stack) if addons else []
        if own:
            spec = spec.model_copy(update={"charts": [*spec.charts, *own]})
            problems += addon_namespace_problems(grants, own)
        plan = plan_stack(
            spec,
            addons=shared,
            from_values=from_values,
            cluster_values=cluster_values if addons else None,
            clusters=clusters,
            sources=sources,
        )
    except SpecError as error:
        problems += error.problems
    if problems:
        raise SpecError(sorted(set(problems)))
    return plan


async def _chart_sources(
    stack: Stack,
    grants: Grants | None,
    reader: SourcesReader | None,
    problems: list[Problem],
) -> Mapping[str, ChartSource]:
    """Private chart sources, read as `values.from` is (same identity); problems join
    `problems`. Without a reader, a chart naming a Secret is a problem."""
    admin = grants is None or grants.admin
    account = None if admin else stack.spec.service_account_name
    try:
        if reader is None:
            return unread_sources(stack.namespace, stack.spec, "no Secret reader configured")
        return await reader.read(stack.namespace, stack.spec, service_account=account)
    except SpecError as error:
        problems += error.problems
        return {}


def _enables_addons(spec: StackSpec) -> bool:
    return Toggle.ENABLED in (spec.security_toggle, spec.observability)
