"""A cluster's leftovers: the Stack's releases it no longer wants there, and their removal.

Which releases are leftovers is decided by `herd.plan.ownership.leftovers` (in the Stack's
record for that cluster, still labelled for the Stack, in a namespace its grants allow);
here it is asked for one cluster's observation, and the removable ones are uninstalled
highest wave first, each as the tenant when its grants say so.

Callers: `herd.rollout.scheduler` (a pass's clusters, and `Rollout.decisions` for the
preview).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from herd.helm.client import ClusterHelm
from herd.plan.ownership import (
    LeftoverDecision,
    Owned,
    Recorded,
    leftovers,
    release_id,
    revision_of,
)
from herd.plan.releases import DesiredRelease, ObservedRelease
from herd.plan.tenancy import addon_release, namespace_allowed
from herd.rollout.actions import ReleaseActions
from herd.rollout.target import Target
from herd.rollout.tenants import RenderCheck


def leftovers_on(
    target: Target,
    observed: Mapping[tuple[str, str], ObservedRelease],
    desired: Sequence[DesiredRelease],
    *,
    owner: str,
    owned: Owned,
) -> list[tuple[ObservedRelease, LeftoverDecision]]:
    """Releases no longer wanted on the target that the record or a label ties to the
    Stack (`owner`), and what to do with each; never shared add-ons."""
    cluster, grants = target.cluster, target.grants

    def allowed(namespace: str) -> bool:
        # Herd's own add-on release of the Stack (its dashboards) is removed as admin.
        return (
            grants is None
            or namespace_allowed(grants, namespace)
            or addon_release(grants, namespace)
        )

    return leftovers(
        observed.values(),
        [(d.key.namespace, d.key.name) for d in desired],
        owner,
        owned.on(cluster),
        allowed,
        known=cluster not in owned.unknown,
    )


async def remove_leftovers(
    actions: ReleaseActions,
    helm: ClusterHelm,
    removable: Sequence[ObservedRelease],
    recorded: Mapping[str, Recorded],
    *,
    tenant: ClusterHelm | None = None,
    check: RenderCheck | None = None,
) -> None:
    """Uninstall `removable`, highest wave first; `recorded`: release id -> the revision
    Herd installed. `tenant` (with `check`, which the stored hooks must pass) runs each
    uninstall in a namespace the tenant's grants cover."""
    for level in sorted({o.wave for o in removable}, reverse=True):
        async with asyncio.TaskGroup() as group:  # actions never raise: no sibling is lost
            for o in (o for o in removable if o.wave == level):
                as_tenant = check is None or check.runs_as_tenant(o.namespace)
                group.create_task(
                    actions.remove(
                        (tenant or helm) if as_tenant else helm,
                        o,
                        recorded=revision_of(recorded.get(release_id(o.namespace, o.name))),
                        check=check if as_tenant else None,
                    )
                )
