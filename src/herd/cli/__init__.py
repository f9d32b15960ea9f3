"""The `herd` command: the CI face of the engine, plus `herd operator` and `herd validate`.

- `validate`: offline schema and graph check of Stack files (here).
- `apply`, `plan`, `delete`, `status`: the engine on kubeconfig files (`herd.cli.fleet`,
  rendering in `herd.cli.render`, live progress in `herd.cli.progress`).
- `operator`: the kopf controller (`herd.operator.handlers`, wired in by `herd.__main__`).

- `rollback`: a Stack's clusters back to their last good revisions (`herd.cli.rollback`).
- `approve`: pass a staged Stack's approval gate on the management cluster
  (`herd.cli.stages`, which also walks the stages of `apply` and `plan`).

Exit codes (stable; pipelines script against them): 0 success / no changes,
1 something failed, 2 invalid input (nothing was touched), 3 `plan` found changes pending
(also `apply` of a suspended Stack), 4 `apply` stopped at an approval gate of spec.rollout.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path

from herd.cli import commands as fleet_commands
from herd.cli.constants import (
    EXIT_CHANGES,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_INVALID,
    EXIT_OK,
)
from herd.cli.rollback import add_rollback

__all__ = ["EXIT_CHANGES", "EXIT_FAILED", "EXIT_INVALID", "EXIT_OK", "main"]


def _validate(args: argparse.Namespace) -> int:
    from herd.cli.documents import load  # noqa: PLC0415 (start-up: only this command needs it)

    documents = load(args.filename)
    if not documents:
        print("no Stack documents found", file=sys.stderr)
        return EXIT_INVALID
    invalid = 0
    for doc in documents:
        if doc.problems:
            invalid += 1
            print(f"INVALID {doc.label}")
            for problem in doc.problems:
                print(f"  {problem}")
            continue
        assert doc.graph is not None
        print(f"OK      {doc.label}")
        for number, wave in enumerate(doc.graph.waves(), start=1):
            print(f"  wave {number}: {', '.join(wave)}")
    print(f"{len(documents) - invalid} valid, {invalid} invalid")
    return EXIT_INVALID if invalid else EXIT_OK


def _version() -> str:
    try:
        return metadata.version("herd")
    except metadata.PackageNotFoundError:  # run from a source tree without installing it
        return "unknown"


def _parser(operator: Callable[[list[str] | None], int] | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="herd", description="Deploy Stacks of Helm charts into many clusters."
    )
    # The installed distribution's version, which the image's smoke check and bug reports quote.
    parser.add_argument("--version", action="version", version=f"herd {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    validate = commands.add_parser(
        "validate", help="check Stack files offline (schema and dependency graph)"
    )
    validate.add_argument(
        "-f",
        "--filename",
        type=Path,
        action="append",
        required=True,
        help="Stack YAML file or directory (repeatable)",
    )
    validate.set_defaults(run=_validate)
    operator_command = commands.add_parser(
        "operator", help="run the controller against the current kubeconfig (or in-cluster)"
    )
    operator_command.add_argument(
        "-n",
        "--namespace",
        action="append",
        help="watch Stacks only in this namespace (repeatable; default: all namespaces)",
    )
    operator_run = operator or _no_operator
    operator_command.set_defaults(run=lambda args: operator_run(args.namespace))
    fleet_commands.add_commands(commands)
    fleet_commands.add_approve(commands)
    add_rollback(commands)
    return parser


def _no_operator(namespaces: list[str] | None) -> int:
    print("herd operator: not available from this entry point", file=sys.stderr)
    return EXIT_INVALID


def main(
    argv: Sequence[str] | None = None,
    *,
    operator: Callable[[list[str] | None], int] | None = None,
) -> int:
    """Run one `herd` command. `operator` runs the controller (`herd.__main__` passes it:
    the CLI does not import the operator face)."""
    args = _parser(operator).parse_args(argv)
    try:
        code: int = args.run(args)
    except KeyboardInterrupt:
        # asyncio.run cancelled the rollout; HelmCommand terminated the helm processes.
        print(f"herd {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return code


if __name__ == "__main__":
    sys.exit(main())
