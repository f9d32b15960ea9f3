"""`herd rollback STACK [--stage S]`: fleet rollback from a pipeline.

The clusters of stage S (with `spec.rollout.scope: Rollout`, of the stages up to S too;
without `--stage`, of every stage) return to their last good revisions now, in reverse
dependency order, through the operator's engine (`Engine.rollback`,
`herd.engine.rollback`). STACK is the Stack file, the clusters are given as to `herd
apply`. The last good revisions are the ones `herd apply` recorded when each stage passed
(kept beside the CLI's ownership record, in each cluster's `herd-system` namespace:
`herd.kube.lastgood`). Exit 0 when every release is back (or had nothing to return to),
1 when one could not be rolled back (its row says why), 2 for invalid input.

Callers: `herd.cli` (which registers the command).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from herd.cli.cluster_flags import add_cluster_options
from herd.cli.commands import load
from herd.cli.constants import EXIT_FAILED, EXIT_OK

if TYPE_CHECKING:  # the engine is imported when the command runs: `herd --version` loads none
    from herd.api.v1 import Stack
    from herd.cli.fleet import Session


async def rollback(args: argparse.Namespace, session: Session, stack: Stack | None) -> int:
    from herd.cli import render  # noqa: PLC0415 (start-up: see above)
    from herd.cli.fleet import emit  # noqa: PLC0415
    from herd.plan.results import State  # noqa: PLC0415

    assert stack is not None
    result = await session.engine.rollback(stack, args.stage)
    result.releases = [session.redact.result(r) for r in result.releases]
    rows = render.release_rows(result)
    rolled = sum(r.action == "rollback" and r.status == State.DEPLOYED for r in rows)
    failed = [r for r in rows if r.status == State.FAILED]
    text = f"{rolled} releases rolled back, {len(failed)} could not be"
    document = render.release_document(stack, result, rows, text)
    emit(args, document, render.release_grid(rows), render.skipped_lines(result.skipped), text)
    return EXIT_FAILED if failed or result.skipped else EXIT_OK


def add_rollback(commands: Any) -> None:
    text = (
        "return a Stack's clusters (of one stage, or all) to their last good revisions, "
        "in reverse dependency order (exit 0 done, 1 a release could not be, 2 invalid)"
    )
    parser = commands.add_parser("rollback", help=text, description=text)
    parser.add_argument("filename", metavar="STACK", type=Path, help="the Stack YAML file")
    parser.add_argument(
        "--stage",
        metavar="NAME",
        help="only this stage of spec.rollout (scope: Rollout: and the stages before it)",
    )
    add_cluster_options(parser)
    parser.add_argument("--concurrency", type=int, metavar="N", help="clusters at once")
    parser.add_argument("-o", "--output", choices=("table", "json"), default="table")

    def command(args: argparse.Namespace) -> int:
        fleet = load("herd.cli.fleet")
        code: int = fleet.run(rollback)(args)
        return code

    parser.set_defaults(run=command)
