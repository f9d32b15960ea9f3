"""The `herd` entry point: the CLI's commands, and `herd operator` (the kopf controller).

The two faces do not import each other; this module, above both, wires the operator into
the CLI's `operator` command. `python -m herd` without arguments runs the operator.

A CLI command run as the `herd` process (`main()` without arguments, the console script)
ends with `os._exit` once its output is flushed and the exit handlers ran (kubernetes'
temporary credential files, logging): the interpreter's teardown of the ~750 modules a
command loads costs about 0.1 CPU-s (0.5 s of wall time on a loaded machine) and does
nothing a process that ends needs. Called with arguments (tests), `main` returns.
"""

import atexit
import contextlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from herd.cli import main as cli_main
from herd.cli.constants import EXIT_OK

_OPERATOR: list[bool] = []  # set when this process ran the operator: it ends as it always did


def run_operator(namespaces: list[str] | None) -> int:
    # Imported here: kopf registers its handlers on import, and only this command wants them.
    from herd.operator import handlers  # noqa: PLC0415

    _OPERATOR.append(True)
    handlers.run(namespaces=namespaces)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    code = cli_main(argv, operator=run_operator)
    if argv is None and not _OPERATOR:
        _exit_now(code)
    return code


def _exit_now(code: int) -> NoReturn:
    """End the process now: output flushed, exit handlers run, no interpreter teardown."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing to say
            stream.flush()
    atexit._run_exitfuncs()  # what a normal exit runs (os._exit would skip it)
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["operator"]))
