"""The command line of `herd apply`, `plan`, `delete` and `status`: their options.

Each command gets the Stack file, the cluster options (`herd.cli.cluster_options`), what
it reads besides (values, add-ons), what it may do (stage, approvals, force), and how it
prints; `herd.cli.fleet` runs it.

Nothing heavy is imported here: a command's engine (`herd.cli.fleet`, `herd.cli.stages`)
is imported when that command runs (`load`), so `herd --version` or `herd validate` load
none of it.

Callers: `herd.cli.main` (through `add_commands`, `add_approve`).
"""

from __future__ import annotations

import argparse
import gc
import importlib
from pathlib import Path
from typing import Any

from herd.cli.cluster_flags import add_cluster_options
from herd.cli.constants import ADDONS_FLAG, ADDONS_SAMPLE, EXIT_APPROVAL
from herd.names import APPROVE_ANNOTATION
from herd.rollout.gates import DEFAULT_LIMITS

# name, help, body (a coroutine of `herd.cli.fleet`), whether it needs a Stack file
COMMANDS: tuple[tuple[str, str, str, bool], ...] = (
    (
        "apply",
        "deploy a Stack to the given clusters (exit 0 deployed, 1 failed, 2 invalid)",
        "apply",
        True,
    ),
    (
        "plan",
        "show what apply would change, changing nothing (exit 0 none, 3 changes)",
        "plan",
        True,
    ),
    ("delete", "uninstall every release of a Stack from the given clusters", "delete", True),
    ("status", "list the Herd-managed releases on the given clusters", "status", False),
)


def add_commands(commands: Any) -> None:
    """Register apply, plan, delete and status on the `herd` parser's subcommands."""
    for name, text, body, needs_stack in COMMANDS:
        parser: argparse.ArgumentParser = commands.add_parser(name, help=text, description=text)
        _inputs(parser, name, needs_stack)
        _behaviour(parser, name)
        _output(parser)
        parser.set_defaults(run=_fleet(body, needs_stack))


def load(name: str) -> Any:
    """Import a command's engine module (`herd.cli.fleet`, ...) with the cyclic garbage
    collector off: the ~650 modules it loads make ~90,000 objects, which the collector
    would otherwise scan again and again while they are made (~15% of the import's CPU).
    They are then frozen (never scanned again: they live as long as the process)."""
    gc.disable()
    try:
        return importlib.import_module(name)
    finally:
        gc.freeze()
        gc.enable()


def _fleet(body: str, needs_stack: bool) -> Any:
    def command(args: argparse.Namespace) -> int:
        fleet = load("herd.cli.fleet")
        code: int = fleet.run(getattr(fleet, body), needs_stack=needs_stack)(args)
        return code

    return command


def add_approve(commands: Any) -> None:
    """Register `herd approve` (run by `herd.cli.stages.approve`)."""
    text = (
        f"approve a Stack's stage gate: sets {APPROVE_ANNOTATION}=STAGE on the Stack "
        "(the operator starts the next stage)"
    )
    parser = commands.add_parser("approve", help=text, description=text)
    parser.add_argument("stack", help="the Stack's name")
    parser.add_argument("stage", help="the stage whose approval gate to pass")
    parser.add_argument("-n", "--namespace", default="default", help="the Stack's namespace")
    parser.add_argument(
        "--kubeconfig",
        type=Path,
        help="the management cluster (default: $KUBECONFIG, or in-cluster)",
    )

    def approve(args: argparse.Namespace) -> int:
        code: int = load("herd.cli.stages").approve(args)
        return code

    parser.set_defaults(run=approve)


def _inputs(parser: argparse.ArgumentParser, name: str, needs_stack: bool) -> None:
    """What the command reads: the Stack, the clusters, values and add-on configuration."""
    parser.add_argument(
        "-f",
        "--filename",
        type=Path,
        required=needs_stack,
        help="the Stack YAML file" + ("" if needs_stack else " (only its releases are listed)"),
    )
    add_cluster_options(parser)
    if name in ("apply", "plan"):
        parser.add_argument(
            "--values-kubeconfig",
            type=Path,
            metavar="FILE",
            help="cluster holding the ConfigMaps/Secrets of values.from (in the Stack's namespace)",
        )
    if name != "status":
        parser.add_argument(
            ADDONS_FLAG,
            type=Path,
            metavar="FILE",
            help="Herd's add-on configuration (the ConfigMap and Secret documents of "
            f"{ADDONS_SAMPLE}); required for a Stack with security or "
            "observability enabled",
        )


def _behaviour(parser: argparse.ArgumentParser, name: str) -> None:
    """What the command may do: one stage, pass approval gates, take over releases."""
    if name in ("apply", "plan"):
        parser.add_argument(
            "--stage",
            metavar="NAME",
            help="only the clusters of this stage of spec.rollout (apply: whatever the gates)",
        )
    if name == "apply":
        parser.add_argument(
            "--approve",
            action="append",
            metavar="STAGE",
            help="pass this stage's approval gate (repeatable); without it apply stops "
            f"at the gate with exit {EXIT_APPROVAL}",
        )
    if name in ("apply", "delete"):
        parser.add_argument(
            "--force",
            action="store_true",
            help="take over (or remove) releases the Herd operator manages for this Stack",
        )


def _output(parser: argparse.ArgumentParser) -> None:
    """How hard the command works and how it prints."""
    parser.add_argument(
        "--concurrency",
        type=_positive,
        metavar="N",
        help=f"clusters and helm processes at once (default {DEFAULT_LIMITS.clusters} "
        f"clusters, {DEFAULT_LIMITS.helm} helm processes)",
    )
    parser.add_argument(
        "-o",
        "--output",
        choices=("table", "json"),
        default="table",
        help="table (default) or one JSON document on stdout",
    )


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value
