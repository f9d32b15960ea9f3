"""The `herd` entry point: the CLI's commands, and `herd operator` (the kopf controller).

The two faces do not import each other; this module, above both, wires the operator into
the CLI's `operator` command. `python -m herd` without arguments runs the operator.
"""

import sys
from collections.abc import Sequence

from herd.cli import main as cli_main
from herd.cli.constants import EXIT_OK


def run_operator(namespaces: list[str] | None) -> int:
    # Imported here: kopf registers its handlers on import, and only this command wants them.
    from herd.operator import handlers  # noqa: PLC0415

    handlers.run(namespaces=namespaces)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    return cli_main(argv, operator=run_operator)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["operator"]))
