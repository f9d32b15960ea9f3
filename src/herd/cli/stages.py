"""Stages on the CLI: `herd apply` walks them, `herd plan` shows them, `herd approve`.

`staged_apply` calls the engine's staged pass until the rollout stops: it waits out a soak
pause (in this process: a CI job's soak is its own wall time), passes an approval gate
named with `--approve NAME`, and stops at a gate not approved (exit 4,
`EXIT_APPROVAL`), at a halt (exit 1), or when done. The CLI keeps no state between runs:
run `herd apply` again with `--approve canary`, or `--stage prod` to run that stage's
clusters alone whatever the gates. A suspended Stack (`spec.suspend: true`) writes
nothing; the exit code then says whether something would change (0 no, 3 yes), as `herd
plan` does. `stage_lines` are the lines printed under the table; `plan_stages` narrows
`herd plan` to one stage. `approve` annotates a Stack on the management cluster
(`herd.suse.com/approve=<stage>`), for the operator.

Callers: `herd.cli.fleet` (apply, plan) and `herd.cli` (approve).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from kubernetes import client

from herd.api import PLURAL, VERSION
from herd.api.v1 import Stack
from herd.cli.constants import EXIT_APPROVAL, EXIT_CHANGES, EXIT_FAILED, EXIT_INVALID, EXIT_OK
from herd.engine.engine import Engine, Preview
from herd.engine.protocols import StackResult
from herd.errors import Problem, SpecError
from herd.kube.client import api_client_from_kubeconfig
from herd.names import APPROVE_ANNOTATION, GROUP
from herd.plan.results import State
from herd.plan.stages import RolloutState
from herd.rollout.scheduler import Progress
from herd.rollout.staged import StagedOutcome, StageInputs


def staged(stack: Stack, stage: str | None) -> bool:
    spec = stack.spec
    return spec.rollout is not None or spec.suspend or stage is not None


async def staged_apply(
    engine: Engine,
    stack: Stack,
    progress: Progress,
    *,
    force: bool,
    stage: str | None,
    approve: Sequence[str],
) -> tuple[StackResult, int | None]:
    """Walk the stages; the last pass's result and the exit code it decides (None: the
    release rows decide, as without stages)."""
    previous = None
    approval: str | None = None
    while True:
        result = await engine.apply(
            stack,
            progress,
            force=force,
            staging=StageInputs(previous=previous, approval=approval, only=stage),
        )
        outcome = result.rollout
        assert outcome is not None
        previous, decision = outcome.status, outcome.decision
        print(f"herd apply: {decision.state.value}: {decision.message}", file=sys.stderr)
        if stage is not None:
            mine = next(set(s.clusters) for s in outcome.stages if s.name == stage)
            done = (State.DEPLOYED, State.UNINSTALLED)
            ok = all(r.state in done for r in result.releases if r.key.cluster in mine)
            return result, EXIT_OK if ok else EXIT_FAILED
        if decision.state is RolloutState.PAUSED and outcome.wake_seconds is not None:
            await asyncio.sleep(outcome.wake_seconds)
            continue
        waiting = decision.state is RolloutState.WAITING_FOR_APPROVAL
        if waiting and decision.stage in approve and approval != decision.stage:
            approval = decision.stage
            continue
        return result, _exit(outcome)


def _exit(outcome: StagedOutcome) -> int | None:
    state = outcome.decision.state
    if state is RolloutState.WAITING_FOR_APPROVAL:
        return EXIT_APPROVAL
    if state is RolloutState.HALTED:
        return EXIT_FAILED
    if state is RolloutState.SUSPENDED:
        pending = sum(len(s.clusters) for s in outcome.stages) - sum(outcome.decision.done)
        return EXIT_CHANGES if pending else EXIT_OK
    return None


def stage_lines(outcome: StagedOutcome | None) -> list[str]:
    """One line per stage (clusters done of total), then where the rollout stands."""
    if outcome is None:
        return []
    lines = [
        f"stage {s.name}: {done} of {len(s.clusters)} clusters at this config"
        f" ({', '.join(s.clusters) or 'none'})"
        for s, done in zip(outcome.stages, outcome.decision.done, strict=False)
    ]
    decision = outcome.decision
    return [*lines, f"rollout {decision.state.value}: {decision.message}"]


def plan_stages(
    engine: Engine, stack: Stack, result: StackResult, previews: list[Preview], stage: str | None
) -> tuple[list[Preview], list[str]]:
    """`herd plan`: the stage of each cluster as notes; `--stage NAME`: only its rows."""
    if stack.spec.rollout is None and stage is None:
        return previews, []
    stages = engine.stages(stack, result.members)
    names = [s.name for s in stages]
    if stage is not None and stage not in names:
        why = f"no stage named {stage!r}; the Stack's stages: {', '.join(names)}"
        raise SpecError([Problem("--stage", why)])
    notes = [f"stage {s.name}: {', '.join(s.clusters) or 'no cluster'}" for s in stages]
    if stack.spec.suspend:
        notes.append("spec.suspend is true: apply would write nothing")
    if stage is None:
        return previews, notes
    mine = next(set(s.clusters) for s in stages if s.name == stage)
    return [p for p in previews if p.key.cluster in mine], notes


def approve(args: argparse.Namespace) -> int:
    """`herd approve STACK STAGE`: let the operator start the stage after STAGE."""
    kubeconfig: Path | None = args.kubeconfig
    try:
        api = api_client_from_kubeconfig(kubeconfig)
    except Exception as error:
        print(f"herd approve: cannot use the kubeconfig ({type(error).__name__})", file=sys.stderr)
        return EXIT_INVALID
    try:
        client.CustomObjectsApi(api).patch_namespaced_custom_object(
            GROUP,
            VERSION,
            args.namespace,
            PLURAL,
            args.stack,
            {"metadata": {"annotations": {APPROVE_ANNOTATION: args.stage}}},
            _request_timeout=30,
        )
    except client.ApiException as error:
        print(f"herd approve: {error.status} {error.reason}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        api.close()  # type: ignore[no-untyped-call]
    print(f"Stack {args.namespace}/{args.stack}: stage {args.stage} approved")
    return EXIT_OK
