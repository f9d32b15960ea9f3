"""A staged pass's rollback half: hold a rolled back rollout, roll back, remember what passed.

`StagedRollback` is built by each `herd.rollout.staged.StagedPass`:

- `held`: the rollback `status.rollout.rollback` shows for this very configuration (the
  digest of the generation and every stage's config): the pass writes nothing and the
  rollout stays Halted (`held_decision`) until the spec changes or
  `herd.suse.com/approve=<failed stage>` is set, which is a retry (`retried`: the keeper
  removes the annotation, as for a gate).
- `roll_back`: after a Halted decision with `onFailure: Rollback`, the clusters
  `herd.plan.rollback.rollback_clusters` chooses go back (`herd.rollout.rollback`), and
  the rollout is held from then on.
- `remember`: the releases of the stages passed (`herd.plan.rollback.passed`) on clusters
  at the current configuration become their last good revisions (`herd.plan.lastgood`):
  the revision from Herd's own helm call, the manifest digest from helm's own output or
  the ownership record, the version and values from the plan. A revision Herd has no
  digest of (someone else wrote the latest one, or an adopted release) is not recorded:
  a forged release Secret never becomes a revision to roll back to.

Callers: `herd.rollout.staged`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from herd.api.rollout import RolloutSpec
from herd.api.status import RollbackStatus, RolloutStatus
from herd.names import APPROVE_ANNOTATION
from herd.plan.desired import StackPlan
from herd.plan.lastgood import Passed, Record, remember, values_digest
from herd.plan.results import ReleaseResult, State
from herd.plan.results import now as _now
from herd.plan.rollback import passed, rollback_clusters
from herd.plan.stages import ClusterState, Decision, RolloutState, Stage, StageRecord
from herd.rollout.rollback import FAILED, Rollback
from herd.rollout.scheduler import Rollout
from herd.rollout.target import Target
from herd.status.rollout import rollback_status


@dataclass(frozen=True)
class RollbackInputs:
    """What a staged pass needs to remember and roll back: the Stack's last good record,
    its generation, the plan, and the executor (None: remember only, roll nothing back)."""

    record: Record
    generation: int
    plan: StackPlan
    executor: Rollback | None = None


def rollout_config(configs: Sequence[str], generation: int) -> str:
    """One digest of the Stack generation and every stage's configuration: a rollback
    holds while it is the same (any spec change, a new generation, lets the stages go)."""
    material = "\n".join([str(generation), *configs])
    return hashlib.sha256(material.encode()).hexdigest()[:32]


class StagedRollback:
    def __init__(
        self,
        inputs: RollbackInputs | None,
        spec: RolloutSpec | None,
        stages: Sequence[Stage],
        configs: Sequence[str],
        *,
        previous: RolloutStatus | None,
        approval: str | None,
    ) -> None:
        self._inputs = inputs
        self._scope = spec.rollback_scope if spec is not None else None
        self._stages = stages
        self.config = rollout_config(configs, inputs.generation if inputs is not None else 0)
        self.status: RollbackStatus | None = None  # what status.rollout.rollback shows
        self.held: RollbackStatus | None = None
        self.retried: str | None = None  # the failed stage whose retry was approved
        self.rows: list[ReleaseResult] = []
        self._rolled: set[str] = set()
        old = previous.rollback if previous is not None else None
        if old is not None and old.config == self.config:
            if approval == old.stage:
                self.retried = old.stage
            else:
                self.held = self.status = old

    def held_decision(
        self, records: Sequence[StageRecord], states: Mapping[str, ClusterState]
    ) -> Decision:
        """Halted at the failed stage, no stage active, saying how to go on."""
        held = self.held
        assert held is not None
        failed = sum(c.state == FAILED for c in held.clusters)
        message = (
            f"stage {held.stage} failed; {held.cluster_count} clusters rolled back (scope "
            f"{held.scope}{f', {failed} could not be' if failed else ''}): halted on this "
            f"generation until the spec changes or {APPROVE_ANNOTATION}={held.stage} "
            "approves a retry"
        )
        waiting = f"rollout rolled back after stage {held.stage} failed"
        done = tuple(
            sum(states.get(c) is ClusterState.DONE for c in s.clusters) for s in self._stages
        )
        return Decision(
            RolloutState.HALTED,
            held.stage,
            message,
            None,
            tuple(records),
            waiting=waiting,
            done=done,
        )

    async def roll_back(
        self,
        decision: Decision,
        rollout: Rollout,
        states: Mapping[str, ClusterState],
        targets: Mapping[str, Target],
    ) -> None:
        """`decision` halted: roll back (with `onFailure: Rollback`), then hold."""
        inputs = self._inputs
        if self._scope is None or inputs is None or inputs.executor is None:
            return
        names = [s.name for s in self._stages]
        if decision.state is not RolloutState.HALTED or decision.stage not in names:
            return
        clusters = rollback_clusters(self._stages, states, names.index(decision.stage), self._scope)
        done = await inputs.executor.run(
            inputs.plan, targets, clusters, f"stage {decision.stage} failed"
        )
        self._rolled = set(clusters)
        self.rows = [r for c in done for r in c.rows]
        rows = [(c.cluster, c.state, c.message) for c in done]
        self.held = self.status = rollback_status(
            decision.stage, self._scope, self.config, _now(), rows
        )

    def remember(
        self, decision: Decision, rollout: Rollout, states: Mapping[str, ClusterState]
    ) -> Record | None:
        """The last good record after this pass; None when it did not change."""
        inputs = self._inputs
        if inputs is None:
            return None
        names = [s.name for s in self._stages]
        found: list[Passed] = []
        for index in passed(decision, names):
            for cluster in self._stages[index].clusters:
                if states.get(cluster) is ClusterState.DONE and cluster not in self._rolled:
                    found += _passed(inputs.plan, rollout, cluster)
        after = remember(inputs.record, found, inputs.generation)
        return None if after == inputs.record else after


def _passed(plan: StackPlan, rollout: Rollout, cluster: str) -> list[Passed]:
    """The Stack's own releases of `cluster` deployed this pass, as Herd knows them."""
    out = []
    for desired in plan.releases_for(cluster):
        row = rollout.results.get(desired.key)
        if desired.owner is not None or row is None or row.state is not State.DEPLOYED:
            continue
        if not row.revision:
            continue
        recorded = rollout.owned.recorded(desired.key)
        manifest = row.manifest
        if manifest is None and recorded is not None and recorded.revision == row.revision:
            manifest = recorded.manifest
        if manifest is None:  # a revision Herd cannot vouch for (not its write): not recorded
            continue
        key = desired.key
        out.append(
            Passed(
                cluster,
                key.namespace,
                key.name,
                desired.chart.version,
                values_digest(desired.values),
                row.revision,
                manifest,
            )
        )
    return out
