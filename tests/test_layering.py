"""The pure core stays pure at run time too: importing it loads no I/O library.

(`lint-imports` checks the import graph; this checks what Python actually loads, which
package `__init__` files could otherwise widen.)
"""

from __future__ import annotations

import subprocess
import sys

PURE = [
    "herd.api",
    "herd.graph",
    "herd.plan",
    "herd.status",
    "herd.results",
    "herd.documents",
    "herd.tenancy",
    "herd.api.grants",
    "herd.clusters.model",
    "herd.clusters.targets",
    "herd.clusters.index",
    "herd.addons.enrich",
]


def test_pure_modules_load_no_kubernetes_kopf_or_pyhelm3() -> None:
    script = (
        f"import sys; import {', '.join(PURE)}; "
        "print(sorted(m for m in ('kubernetes', 'kopf', 'pyhelm3') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"
