"""The cluster options' flags on the `herd` parser, free of heavy imports (`herd --version`
builds the parser). Their values are read by `herd.cli.cluster_options`.

Callers: `herd.cli.commands` (through `herd.cli.cluster_options` too).
"""

from __future__ import annotations

import argparse
from typing import Any

OPTIONS_DEST = "cluster_options"


class _Ordered(argparse.Action):
    """Collects every cluster option as (option, value) in command-line order."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        options = list(getattr(namespace, OPTIONS_DEST, None) or [])
        options.append((option_string or "", str(values)))
        setattr(namespace, OPTIONS_DEST, options)


def add_cluster_options(parser: argparse.ArgumentParser) -> None:
    """Register --kubeconfig/--context/--label/--clusters; read back with
    `parse_cluster_options(getattr(args, OPTIONS_DEST))`."""
    parser.set_defaults(**{OPTIONS_DEST: []})
    group = parser.add_argument_group("target clusters (kubeconfig files)")
    for flag, metavar, text in (
        ("--kubeconfig", "FILE[=ID]", "a cluster from FILE's current context (repeatable)"),
        ("--context", "CTX[=ID]", "a cluster from context CTX of the preceding --kubeconfig"),
        ("--label", "ID:KEY=VALUE", "label cluster ID, for Stack selectors (repeatable)"),
        ("--clusters", "FILE", "YAML list of {id, kubeconfig, context, labels}"),
    ):
        group.add_argument(flag, metavar=metavar, help=text, action=_Ordered, dest=OPTIONS_DEST)
