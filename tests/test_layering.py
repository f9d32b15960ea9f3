"""The pure core stays pure at run time too: importing it loads no I/O library.

(`lint-imports` checks the import graph; this checks what Python actually loads, which
package `__init__` files could otherwise widen.)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PURE_PACKAGES = ["herd.api", "herd.plan", "herd.status"]
PURE_MODULES = ["herd.errors", "herd.names", "herd.settings"]  # the loose bottom layer


def _pure_modules() -> list[str]:
    """Every module of the pure packages (found on disk, so a new one is covered too)."""
    root = Path(__file__).resolve().parent.parent / "src"
    found = []
    for package in PURE_PACKAGES:
        folder = root / package.replace(".", "/")
        found += [
            f"{package}.{path.stem}"
            for path in sorted(folder.glob("*.py"))
            if path.stem != "__init__"
        ]
    return found + PURE_MODULES


PURE = _pure_modules()


def test_pure_modules_load_no_kubernetes_kopf_or_pyhelm3() -> None:
    script = (
        f"import sys; import {', '.join(PURE)}; "
        "print(sorted(m for m in ('kubernetes', 'kopf', 'pyhelm3') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"
