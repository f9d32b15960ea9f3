"""The `herd` command: the CI face of the engine, plus `herd operator` and `herd validate`.

Exit codes (stable; pipelines script against them): 0 success / no changes,
1 something failed, 2 invalid input, 3 `plan` found changes pending.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from herd.documents import load

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_CHANGES = 3


def _validate(args: argparse.Namespace) -> int:
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="herd", description="Deploy Stacks of Helm charts into many clusters."
    )
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
