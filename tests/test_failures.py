"""Helm's stderr classified: kind and whether a retry can help (`herd.failures`)."""

from __future__ import annotations

import pytest

from herd.failures import FailureKind, classify, first_line


@pytest.mark.parametrize(
    ("stderr", "kind", "transient"),
    [
        (
            "Error: UPGRADE FAILED: another operation (install/upgrade/rollback) is in progress",
            FailureKind.OPERATION_IN_PROGRESS,
            True,
        ),
        (
            'Error: Kubernetes cluster unreachable: Get "https://127.0.0.1:1/version": dial tcp',
            FailureKind.CLUSTER_UNREACHABLE,
            True,
        ),
        ("Error: INSTALL FAILED: timed out waiting for the condition", FailureKind.TIMEOUT, False),
        ("Error: UPGRADE FAILED: context deadline exceeded", FailureKind.TIMEOUT, False),
        # API timeouts are the connection's, not the chart's: retried.
        (
            'Error: Get "https://10.0.0.1/api": net/http: request canceled '
            "(Client.Timeout exceeded while awaiting headers)",
            FailureKind.API_TIMEOUT,
            True,
        ),
        (
            "Error: create: failed to create: etcdserver: request timed out",
            FailureKind.API_TIMEOUT,
            True,
        ),
        (
            "Error: the server was unable to return a response in the time allotted, "
            "but may still be processing the request",
            FailureKind.API_TIMEOUT,
            True,
        ),
        ("Error: net/http: TLS handshake timeout", FailureKind.API_TIMEOUT, True),
        ("Error: http2: client connection lost", FailureKind.API_TIMEOUT, True),
        ("Error: template: app/templates/x.yaml:3:4: executing", FailureKind.RENDER, False),
        (
            'Error: chart "nope" version "9" not found in https://r',
            FailureKind.CHART_NOT_FOUND,
            False,
        ),
        (
            "Error: rendered manifests contain a resource that already exists",
            FailureKind.RESOURCE_CONFLICT,
            False,
        ),
        ("Error: something else entirely", FailureKind.FAILED, False),
    ],
)
def test_classify(stderr: str, kind: FailureKind, transient: bool) -> None:
    failure = classify(stderr)
    assert (failure.kind, failure.transient) == (kind, transient)


def test_connection_errors_while_pulling_are_the_repository_s() -> None:
    failure = classify("Error: dial tcp 127.0.0.1:1: connect: connection refused", pulling=True)
    assert failure.kind is FailureKind.REPO_UNREACHABLE


def test_first_line_drops_noise_and_is_bounded() -> None:
    assert first_line("debug\nError: boom\n") == "boom"
    assert len(first_line("Error: " + "x" * 500)) == 300
