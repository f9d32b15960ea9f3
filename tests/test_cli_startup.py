"""The CLI's start-up loads only what a command needs (issue 26: its fixed costs).

Checked in a fresh interpreter, as `herd` starts: `herd --version` and the parser load no
engine, no kubernetes and no pydantic; `herd apply`'s modules load no `rich` (a pipeline's
output is not a terminal) and no pyhelm3 (Herd runs helm itself).
"""

from __future__ import annotations

import ast
import subprocess
import sys

HEAVY = ("kubernetes", "pydantic", "rich", "pyhelm3", "herd.engine", "herd.api", "yaml")


def loaded(statement: str) -> list[str]:
    """Which of `HEAVY` a fresh interpreter has loaded after `statement`."""
    script = (
        "import sys, contextlib\n"
        f"with contextlib.suppress(SystemExit):\n    {statement}\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    return list(ast.literal_eval(done.stdout.strip().splitlines()[-1]))


def test_version_and_the_parser_load_no_engine() -> None:
    assert loaded("import herd.__main__; herd.__main__.main(['--version'])") == []


def test_apply_loads_no_rich_and_no_pyhelm3_off_a_terminal() -> None:
    found = loaded("import herd.cli.fleet, herd.cli.progress, herd.engine.engine")
    assert "herd.engine" in found  # the engine itself, of course
    assert "rich" not in found
    assert "pyhelm3" not in found


def test_the_herd_process_ends_with_its_exit_handlers_run_and_its_code() -> None:
    # kubernetes removes the credential files it wrote from a kubeconfig in an exit handler.
    script = (
        "import atexit, sys, herd.__main__\n"
        "atexit.register(print, 'handler ran')\n"
        "sys.stdout.write('buffered ')\n"
        "herd.__main__._exit_now(3)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert done.returncode == 3
    assert done.stdout == "buffered handler ran\n"
