"""Lazy package exports (PEP 562), so a package's pure modules import without its I/O ones.

Used by `herd.clusters` and `herd.addons`, whose `__init__` re-exports classes that need
the kubernetes client or helm.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping


def lazy_attributes(package: str, exports: Mapping[str, str]) -> Callable[[str], object]:
    """A module `__getattr__` loading `exports` (name -> defining module) on first use."""

    def __getattr__(name: str) -> object:
        if name in exports:
            return getattr(importlib.import_module(exports[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
