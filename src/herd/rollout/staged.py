"""A staged pass: the stages of `spec.rollout` one after the other, or none (suspend).

`run_staged` carries out what `herd.plan.stages.decide` says. It asks which stage may run,
runs that stage's clusters (bounded by the stage's `maxConcurrent`, stopped past the
failure budget: `herd.rollout.admission`), learns where each cluster stands, and asks
again, until the decision names no stage to run (a stage incomplete or halted, a soak
pause or an approval gate, or every stage done) or the Stack's spec changed meanwhile
(`interrupted`: the next pass restarts the stages with the new spec). The clusters of
the stages that did not run are only observed: no helm write, their rows saying what
they wait for. `spec.suspend` observes every cluster and writes nothing. `only`
(`herd apply --stage NAME`) writes to that stage's clusters alone, whatever the gates.

Fleet rollback (`spec.rollout.onFailure: Rollback`, `herd.rollout.staged_rollback`): a
halted stage's clusters go back to their last good revisions in the pass that halted,
and the rollout is held (every cluster observed, none written) while the configuration
stays the one rolled back, until `herd.suse.com/approve=<failed stage>` asks for a retry.
After each pass the releases of the stages passed become their last good revisions.

Callers: `herd.engine.engine`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace

from herd.api.rollout import RolloutSpec
from herd.api.status import RolloutStatus
from herd.errors import Problem, SpecError
from herd.plan.clusters import Cluster
from herd.plan.desired import StackPlan
from herd.plan.results import State
from herd.plan.stages import (
    ClusterState,
    Decision,
    RolloutState,
    Stage,
    assign_stages,
    decide,
    stage_config,
)
from herd.rollout.admission import Admission
from herd.rollout.checks import COMING_UP, RoundResult, StageChecker
from herd.rollout.scheduler import Rollout
from herd.rollout.staged_inputs import ChecksReport, StagedOutcome, StageInputs
from herd.rollout.staged_rollback import StagedRollback
from herd.rollout.target import Target
from herd.status.facts import ClusterScan
from herd.status.rollout import records_of, rollout_status

__all__ = ["ChecksReport", "StageInputs", "StagedOutcome", "StagedPass", "run_staged"]

INTERRUPTED = "the spec changed: the stages restart with it"
FIRST_ROUND_WAIT = 60.0  # seconds a stage's first check round waits for objects coming up
FIRST_ROUND_TICK = 2.0


class StagedPass:
    def __init__(
        self,
        rollout: Rollout,
        plan: StackPlan,
        targets: Sequence[Target],
        stages: list[Stage],
        *,
        spec: RolloutSpec | None,
        suspended: bool,
        known_failed: Mapping[str, str],
        inputs: StageInputs,
        names: Mapping[str, str] | None = None,
    ) -> None:
        self._names = dict(names or {})  # cluster id -> name, for {{ .Cluster.Name }}
        self._rollout = rollout
        self._plan = plan
        self._targets = {t.cluster: t for t in targets}
        self.stages = stages
        self._max_failures = spec.max_failures if spec else 0
        self._suspended = suspended
        self._inputs = inputs
        self._why = dict(known_failed)
        members = {c for s in stages for c in s.clusters}
        self.states: dict[str, ClusterState] = {
            c: ClusterState.FAILED for c in known_failed if c in members
        }
        self._records = records_of(inputs.previous, stages)
        self._configs = [
            stage_config([r for c in s.clusters for r in plan.releases_for(c)]) for s in stages
        ]
        # Check failures persist in the stage's record while its config stays the same:
        # the stage's outcome, not one pass's (`herd.rollout.checks`).
        self.check_failed: dict[str, str] = {
            cluster: why
            for record, config in zip(self._records, self._configs, strict=True)
            if record.config == config
            for cluster, why in record.failures
        }
        self.held: dict[str, str] = {}  # clusters a check holds back now, and why
        self.scans: dict[str, ClusterScan] = {}  # the newest scan the security check read
        self._checkers: dict[int, StageChecker] = {}
        self._why |= self.check_failed
        self.states |= dict.fromkeys(self.check_failed, ClusterState.FAILED)
        self._seeded = frozenset(self.states)
        self.peaks: dict[str, int] = {}
        self._ran: set[str] = set()  # clusters this pass ran or observed
        self._undo = StagedRollback(
            inputs.rollback,
            spec,
            stages,
            self._configs,
            previous=inputs.previous,
            approval=inputs.approval,
        )
        # A retry approved after a rollback is used up like a gate's approval.
        self._approved: str | None = self._undo.retried

    def decide(self) -> Decision:
        if self._undo.held is not None:  # rolled back at this config: no stage may run
            decision = self._undo.held_decision(self._records, self.states)
            if self._inputs.on_stage is not None:
                self._inputs.on_stage(self._status(decision))
            return decision
        self._record_failures()
        decision = decide(
            self.stages,
            self.states,
            self._records,
            self._configs,
            now=self._inputs.clock(),
            approval=self._inputs.approval,
            max_failures=self._max_failures,
            suspended=self._suspended,
            first_failure=self._first_failure(),
            held=self.held,
        )
        self._records = list(decision.records)
        self._approved = self._approved or decision.approved
        if self._inputs.on_stage is not None:
            self._inputs.on_stage(self._status(decision))
        return decision

    def _status(self, decision: Decision) -> RolloutStatus:
        return rollout_status(self.stages, decision, held=self.held, rollback=self._undo.status)

    def _record_failures(self) -> None:
        """The check failures of each stage into its record (at the current config)."""
        for index, stage in enumerate(self.stages):
            mine = {c: w for c, w in self.check_failed.items() if c in stage.clusters}
            if not mine:
                continue
            record = self._records[index] if index < len(self._records) else None
            if record is None:
                continue
            # A stage a check failed has not succeeded: its soak starts over once it does.
            self._records[index] = replace(
                record,
                config=self._configs[index],
                succeeded_at=None,
                approved=False,
                failures=tuple(sorted(mine.items())),
            )

    async def run(self) -> StagedOutcome:
        interrupted = False
        self._warm_checks()
        if self._inputs.only is not None:
            index = next(i for i, s in enumerate(self.stages) if s.name == self._inputs.only)
            await self._stage(index)
            waiting = f"not in --stage {self._inputs.only}"
        else:
            ran: set[int] = set()
            soaked: set[int] = set()
            while True:
                decision = self.decide()
                soak = self._to_soak(decision, soaked)
                if soak is not None:
                    soaked.add(soak)
                    if await self._soak(soak, decision):
                        interrupted = True
                        break
                    continue
                if decision.active is None or decision.active in ran:
                    break
                if ran and self._inputs.interrupted is not None and self._inputs.interrupted():
                    interrupted = True
                    break
                ran.add(decision.active)
                await self._stage(decision.active)
            if decision.state is RolloutState.HALTED and self._undo.held is None:
                halted = [s.name for s in self.stages].index(decision.stage)
                if halted not in ran:  # its failed clusters keep their rows; no new start
                    await self._stage(halted)
                decision = self.decide()
                await self._undo.roll_back(decision, self._rollout, self.states, self._targets)
            waiting = INTERRUPTED if interrupted else decision.waiting
        await self._observe_rest(waiting or "waiting")
        final = self.decide()
        if self._approved and final.approved is None:
            final = _with_approved(final, self._approved)
        return StagedOutcome(
            self.stages,
            final,
            self._status(final),
            peaks=self.peaks,
            interrupted=interrupted,
            rollback=self._undo.rows,
            good=self._undo.remember(final, self._rollout, self.states),
            held=bool(self.held),
        )

    def _warm_checks(self) -> None:
        """What the checks' first round needs starts now, while helm deploys."""
        probe = self._inputs.probe
        if probe is not None and any(s.checks and s.checks.reads_manifests for s in self.stages):
            probe.warm()

    async def _stage(self, index: int) -> None:
        stage = self.stages[index]
        walked = [c for s in self.stages[: index + 1] for c in s.clusters]
        failed = sum(self.states.get(c) is ClusterState.FAILED for c in walked)
        admission = Admission(
            stage.max_concurrent, self._max_failures - failed, stage.name, known=self._seeded
        )
        targets = [self._targets[c] for c in stage.clusters if c in self._targets]
        self._ran.update(stage.clusters)
        await self._rollout.run(self._plan, targets, admission=admission)
        self.peaks[stage.name] = admission.peak
        self._learn(stage.clusters)
        await self._check_round(index)

    def _checker(self, index: int) -> StageChecker | None:
        checks, probe = self.stages[index].checks, self._inputs.probe
        if checks is None or probe is None:
            return None
        if index not in self._checkers:
            self._checkers[index] = StageChecker(
                probe,
                checks,
                self._targets,
                lambda: list(self._rollout.results.values()),
                self._inputs.clock,
                names=self._names,
            )
        return self._checkers[index]

    async def _check_round(self, index: int) -> None:
        """One round of the stage's checks on its deployed clusters, before the stage may
        count as succeeded."""
        checker = self._checker(index)
        if checker is None:
            return
        stage = self.stages[index]
        done = [c for c in stage.clusters if self.states.get(c) is ClusterState.DONE]
        waited = 0.0
        while True:  # objects helm did not wait for may still be coming up: give them time
            result = await checker.round(done, first=True)
            self._apply(result, done)
            coming = [c for c, why in result.held.items() if why.startswith(COMING_UP)]
            if not coming or waited >= FIRST_ROUND_WAIT:
                return
            await asyncio.sleep(FIRST_ROUND_TICK)
            waited += FIRST_ROUND_TICK
            done = coming

    def _apply(self, result: RoundResult, checked: Collection[str]) -> None:
        # `checked` were all deployed (Done) when picked: one no check holds is Done again.
        for cluster in checked:
            self.held.pop(cluster, None)
            if cluster not in self.check_failed:
                self.states[cluster] = ClusterState.DONE
        for cluster, why in result.held.items():
            self.held[cluster] = why
            self.states[cluster] = ClusterState.PENDING
        self.scans |= result.scans
        for cluster, why in result.failed.items():
            self.check_failed[cluster] = why
            self._why[cluster] = why
            self.states[cluster] = ClusterState.FAILED

    def _to_soak(self, decision: Decision, soaked: Collection[int]) -> int | None:
        """The stage whose soak pause the checks watch now, if any."""
        if decision.state is not RolloutState.PAUSED or decision.wake_at is None:
            return None
        index = [s.name for s in self.stages].index(decision.stage)
        if index in soaked or self._checker(index) is None:
            return None
        return index

    async def _soak(self, index: int, decision: Decision) -> bool:
        """Watch the stage's checks until its pause ends, a cluster fails, or the spec
        changes (True: interrupted). A hold does not end the soak (its clock goes on, as
        between passes): the cluster is looked at again each round, and `on_checks` hears
        of each change of what the checks hold or failed or the security check read, so
        the status follows them."""
        checker = self._checker(index)
        assert checker is not None and decision.wake_at is not None
        stage = self.stages[index]
        live = [c for c in stage.clusters if self.states.get(c) is ClusterState.DONE]
        interrupted = self._inputs.interrupted or (lambda: False)
        stop = asyncio.Event()
        self._report(decision)
        seen = (dict(self.held), dict(self.check_failed), dict(self.scans))

        def stopping() -> bool:
            return stop.is_set() or interrupted()

        def on_round(result: RoundResult) -> None:
            nonlocal seen
            self._apply(result, live)
            if result.failed:
                stop.set()
            now = (dict(self.held), dict(self.check_failed), dict(self.scans))
            if now != seen:
                seen = now
                self._report(self.decide())

        await checker.soak(live, decision.wake_at, stopping, on_round)
        return not stop.is_set() and interrupted()

    def _report(self, decision: Decision) -> None:
        if self._inputs.on_checks is not None:
            clusters = tuple(self._targets)
            report = ChecksReport(self._status(decision), dict(self.scans), clusters)
            self._inputs.on_checks(report)

    async def _observe_rest(self, hold: str) -> None:
        rest = [c for s in self.stages for c in s.clusters if c not in self._ran]
        self._ran.update(rest)
        targets = [self._targets[c] for c in rest if c in self._targets]
        if targets:
            await self._rollout.run(self._plan, targets, hold=hold)
        self._learn(rest)

    def _learn(self, clusters: Collection[str]) -> None:
        """Each cluster's state from its releases' results (unusable ones stay Failed)."""
        by_cluster: dict[str, list[State]] = {}
        for result in self._rollout.results.values():
            by_cluster.setdefault(result.key.cluster, []).append(result.state)
        for cluster in clusters:
            if cluster not in self._targets or self._rollout.cluster_failed(cluster):
                self.states[cluster] = ClusterState.FAILED
            elif all(s is State.DEPLOYED for s in by_cluster.get(cluster, [])):
                self.states[cluster] = ClusterState.DONE
            elif cluster in self._seeded:
                continue  # held or in backoff: it stays a failure
            else:
                self.states[cluster] = ClusterState.PENDING
            if cluster in self.check_failed:  # deployed, but a check failed it
                self.states[cluster] = ClusterState.FAILED

    def _first_failure(self) -> str:
        for stage in self.stages:
            for cluster in stage.clusters:
                if self.states.get(cluster) is not ClusterState.FAILED:
                    continue
                if cluster in self._rollout.unreachable:
                    return f"cluster {cluster}: {self._rollout.unreachable[cluster]}"
                for result in self._rollout.results.values():
                    if result.key.cluster == cluster and result.state is State.FAILED:
                        return f"chart {result.chart} on cluster {cluster}: {result.message}"
                return f"cluster {cluster}: {self._why.get(cluster, 'not deployed')}"
        return ""


def _with_approved(decision: Decision, stage: str) -> Decision:
    return replace(decision, approved=stage)


async def run_staged(
    rollout: Rollout,
    plan: StackPlan,
    targets: Sequence[Target],
    members: Sequence[Cluster],
    *,
    spec: RolloutSpec | None,
    suspended: bool,
    known_failed: Mapping[str, str],
    inputs: StageInputs,
) -> StagedOutcome:
    """One staged pass over `members` (every targeted cluster, unusable ones included:
    they hold their stage back). `known_failed`: clusters already failed (not usable,
    in backoff, held), counted against `maxFailures` before their stage starts."""
    stages = assign_stages(spec, members)
    names = [s.name for s in stages]
    if inputs.only is not None and inputs.only not in names:
        why = f"no stage named {inputs.only!r}; the Stack's stages: {', '.join(names)}"
        raise SpecError([Problem("--stage", why)])
    staged = StagedPass(
        rollout,
        plan,
        targets,
        stages,
        spec=spec,
        suspended=suspended,
        known_failed=known_failed,
        inputs=inputs,
        names={c.id: c.name for c in members},
    )
    return await staged.run()
