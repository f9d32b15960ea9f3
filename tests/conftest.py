"""Fast tests: pure logic only, no cluster, no helm. Shared builders live here."""

from __future__ import annotations

from typing import Any

import pytest


def stack_body(*charts: dict[str, Any], **spec: Any) -> dict[str, Any]:
    """A minimal valid Stack document; `charts` and `spec` override the defaults."""
    return {
        "apiVersion": "herd.suse.com/v1",
        "kind": "Stack",
        "metadata": {"name": "s", "namespace": "default"},
        "spec": {
            "targets": {"clusterIds": ["c-m-1"]},
            "charts": list(charts) or [chart("a")],
            **spec,
        },
    }


def chart(name: str, *depends_on: str, **fields: Any) -> dict[str, Any]:
    return {
        "name": name,
        "repo": "https://charts.example.com",
        "version": "1.0.0",
        "dependsOn": list(depends_on),
        **fields,
    }


@pytest.fixture
def body() -> dict[str, Any]:
    return stack_body()
