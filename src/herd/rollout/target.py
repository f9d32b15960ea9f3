"""What a rollout is given per cluster: its id, a kubeconfig file, and the Stack's grants there.

Made by the engine (`herd.engine.targets.kubeconfig_targets`), read by the rollout
(`herd.rollout.scheduler`, `herd.rollout.leftovers`, `herd.rollout.staged`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from herd.plan.tenancy import Grants


@dataclass(frozen=True)
class Target:
    """A cluster to roll out to: its id and a kubeconfig file the caller keeps alive.

    `grants`: what the Stack was granted on this cluster (`Grants.on_cluster`); None or
    unrestricted keeps the kubeconfig's identity and checks nothing. Bounded grants make the
    Stack's own releases go through `herd.rollout.tenants` (RBAC provisioned, helm as the
    tenant identity, render check); shared add-on releases keep the admin identity.
    """

    cluster: str
    kubeconfig: Path
    grants: Grants | None = None
