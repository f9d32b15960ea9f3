"""The error taxonomy: one root, three branches, and `describe` for every catch-all."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import herd
from herd.errors import (
    HerdError,
    PermanentError,
    Problem,
    ReleaseError,
    SpecError,
    TransientError,
    describe,
)
from herd.helm.failures import FailureKind, HelmFailure

BRANCHES = (PermanentError, TransientError, ReleaseError)


def _error_classes() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(herd.__path__, "herd."):
        if info.name == "herd.__main__":
            continue
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, BaseException)
                and value.__module__ == info.name
            ):
                found[f"{info.name}.{value.__qualname__}"] = value
    return found


def test_every_error_class_takes_one_branch_of_herd_error() -> None:
    found = _error_classes()
    assert "herd.helm.failures.HelmFailure" in found and len(found) > 20
    astray = {
        name
        for name, cls in found.items()
        if not issubclass(cls, BRANCHES) and cls is not HerdError
    }
    assert astray == set()
    assert issubclass(HelmFailure, ReleaseError) and issubclass(SpecError, PermanentError)


class _ApiError(Exception):
    status = 503
    reason = "Service Unavailable"


@pytest.mark.parametrize(
    ("error", "where", "message"),
    [
        (KeyError("token: s3cr3t"), {"cluster": "c-1"}, "unexpected KeyError on cluster c-1"),
        (
            ValueError("apiVersion: v1\nusers: [{token: s3cr3t}]"),
            {"doing": "getting its kubeconfig"},
            "unexpected ValueError getting its kubeconfig",
        ),
        (_ApiError("body with s3cr3t"), {}, "unexpected _ApiError 503 Service Unavailable"),
        (TransientError("cluster c-1: Secret unreadable"), {"cluster": "c-1"}, None),
        (SpecError([Problem("spec.charts[0].repo", "not a URL")]), {}, None),
        (HelmFailure(FailureKind.RENDER, "template: x: boom", transient=False), {}, None),
    ],
)
def test_describe_says_what_happened_and_never_quotes_a_bug(
    error: BaseException, where: dict[str, str], message: str | None
) -> None:
    said = describe(error, **where)  # type: ignore[arg-type]
    assert said == (message if message is not None else str(error))
    assert "s3cr3t" not in said
