"""Helm's stderr classified: kind and whether a retry can help (`herd.helm.failures`)."""

from __future__ import annotations

import pytest

from herd.helm.failures import FailureKind, classify, first_line


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


# The same faults, provoked on the test bed with helm v3.17.3 and v4.3.2 (stderr as
# printed, minus helm 4's `level=WARN` lines where they only repeat the error).
HELM3_AND_HELM4 = [
    (
        "timeout",
        "Error: context deadline exceeded",
        "Error: resource Deployment/t4/nr not ready. status: InProgress, message: Available: 0/1\n"
        "context deadline exceeded",
        FailureKind.TIMEOUT,
        False,
    ),
    (
        "timeout, atomic",
        "Error: release nr2 failed, and has been uninstalled due to atomic being set: "
        "context deadline exceeded",
        "Error: release nr2 failed, and has been uninstalled due to rollback-on-failure being "
        "set: resource Deployment/t4/nr2 not ready. status: InProgress, message: Available: 0/1"
        "\ncontext deadline exceeded",
        FailureKind.TIMEOUT,
        False,
    ),
    (
        "render",
        "Error: execution error at (broken/templates/configmap.yaml:7:14): "
        "broken.mustSet is required",
        "Error: execution error at (broken/templates/configmap.yaml:7:14): "
        "broken.mustSet is required",
        FailureKind.RENDER,
        False,
    ),
    (
        "schema",
        "Error: values don't meet the specifications of the schema(s) in the following "
        "chart(s):\napp:\n- replicaCount: Invalid type. Expected: integer, given: string\n",
        "Error: values don't meet the specifications of the schema(s) in the following "
        "chart(s):\napp:\n- at '/replicaCount': got string, want integer\n",
        FailureKind.RENDER,
        False,
    ),
    (
        "invalid object",
        "Error: 1 error occurred:\n"
        '\t* Deployment.apps "inv" is invalid: spec.replicas: Invalid value: -1: '
        "must be greater than or equal to 0\n\n",
        "Error: server-side apply failed for object c4/inv apps/v1, Kind=Deployment: "
        'Deployment.apps "inv" is invalid: spec.replicas: Invalid value: -1: '
        "must be greater than or equal to 0",
        FailureKind.INVALID,
        False,
    ),
    (
        "object owned by no release",
        'Error: Unable to continue with install: ConfigMap "squat" in namespace "c3" exists '
        "and cannot be imported into the current release: invalid ownership metadata; "
        'label validation error: missing key "app.kubernetes.io/managed-by"',
        'Error: unable to continue with install: ConfigMap "squat" in namespace "c4" exists '
        "and cannot be imported into the current release: invalid ownership metadata; "
        'label validation error: missing key "app.kubernetes.io/managed-by"',
        FailureKind.RESOURCE_CONFLICT,
        False,
    ),
    (
        "another operation",
        "Error: UPGRADE FAILED: another operation (install/upgrade/rollback) is in progress",
        "Error: UPGRADE FAILED: another operation (install/upgrade/rollback) is in progress",
        FailureKind.OPERATION_IN_PROGRESS,
        True,
    ),
    (
        "cluster unreachable",
        "Error: Kubernetes cluster unreachable: stat /k/nope.yaml: no such file or directory",
        "Error: kubernetes cluster unreachable: stat /k/nope.yaml: no such file or directory",
        FailureKind.CLUSTER_UNREACHABLE,
        True,
    ),
]

# Pulls (classified with pulling=True).
HELM3_AND_HELM4_PULLS = [
    (
        "chart version not in the repository",
        'Error: chart "app" version "9.9.9" not found in http://127.0.0.1:42503 repository',
        'Error: chart "app" version "9.9.9" not found in http://127.0.0.1:42503 repository',
        FailureKind.CHART_NOT_FOUND,
        False,
    ),
    (
        "OCI chart not in the registry",
        "Error: 127.0.0.1:45123/charts/nosuch:0.1.0: not found",
        'Error: failed to perform "FetchReference" on source: '
        "127.0.0.1:45123/charts/nosuch:0.1.0: not found",
        FailureKind.CHART_NOT_FOUND,
        False,
    ),
    (
        "repository unreachable",
        'Error: looks like "http://127.0.0.1:1" is not a valid chart repository or cannot be '
        'reached: Get "http://127.0.0.1:1/index.yaml": dial tcp 127.0.0.1:1: connect: '
        "connection refused",
        'Error: looks like "http://127.0.0.1:1" is not a valid chart repository or cannot be '
        'reached: Get "http://127.0.0.1:1/index.yaml": dial tcp 127.0.0.1:1: connect: '
        "connection refused",
        FailureKind.REPO_UNREACHABLE,
        True,
    ),
    (
        "OCI registry unreachable",
        'Error: failed to do request: Head "http://127.0.0.1:1/v2/charts/app/manifests/0.1.0": '
        "dial tcp 127.0.0.1:1: connect: connection refused",
        'Error: failed to perform "FetchReference" on source: Get '
        '"https://127.0.0.1:1/v2/charts/app/manifests/0.1.0": dial tcp 127.0.0.1:1: connect: '
        "connection refused",
        FailureKind.REPO_UNREACHABLE,
        True,
    ),
]


def _cases(table: list[tuple[str, str, str, FailureKind, bool]]) -> list[object]:
    return [
        pytest.param(text, kind, transient, id=f"{name}, helm {major}")
        for name, helm3, helm4, kind, transient in table
        for major, text in ((3, helm3), (4, helm4))
    ]


@pytest.mark.parametrize(("stderr", "kind", "transient"), _cases(HELM3_AND_HELM4))
def test_helm3_and_helm4_texts_classify_alike(
    stderr: str, kind: FailureKind, transient: bool
) -> None:
    failure = classify(stderr)
    assert (failure.kind, failure.transient) == (kind, transient)


@pytest.mark.parametrize(("stderr", "kind", "transient"), _cases(HELM3_AND_HELM4_PULLS))
def test_helm3_and_helm4_pull_texts_classify_alike(
    stderr: str, kind: FailureKind, transient: bool
) -> None:
    failure = classify(stderr, pulling=True)
    assert (failure.kind, failure.transient) == (kind, transient)


def test_helm4_server_side_apply_conflict_is_a_resource_conflict() -> None:
    # Helm 4 applies server-side: a field another manager owns fails the upgrade (helm 3's
    # three-way merge overwrote it). Provoked with `kubectl apply --server-side`.
    failure = classify(
        'level=WARN msg="upgrade failed" name=dr2 error="conflict occurred while applying"\n'
        "Error: UPGRADE FAILED: conflict occurred while applying object c4/dr2 /v1, "
        'Kind=ConfigMap: Apply failed with 1 conflict: conflict with "someone": .data.message'
    )
    assert (failure.kind, failure.transient) == (FailureKind.RESOURCE_CONFLICT, False)
    assert failure.message.startswith("UPGRADE FAILED: conflict occurred")


def test_helm4_timeout_message_names_the_object_that_was_not_ready() -> None:
    failure = classify(HELM3_AND_HELM4[0][2])
    assert failure.message == (
        "timed out: resource Deployment/t4/nr not ready. status: InProgress, "
        "message: Available: 0/1"
    )
    assert classify(HELM3_AND_HELM4[0][1]).message == "context deadline exceeded"
