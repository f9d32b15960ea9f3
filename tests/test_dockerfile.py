"""The image ships the Helm 4 the test bed builds and tests (`e2e.testbed.binaries`)."""

from __future__ import annotations

import re
from pathlib import Path

from e2e.testbed.binaries import HELM_VERSION

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def test_the_image_builds_the_test_beds_helm_4() -> None:
    assert f"ARG HELM_VERSION={HELM_VERSION}\n" in DOCKERFILE
    assert HELM_VERSION.startswith("v4.")
    assert "COPY e2e/testbed/tools/helm/go.mod e2e/testbed/tools/helm/go.sum ./" in DOCKERFILE
    module = (ROOT / "e2e/testbed/tools/helm/go.mod").read_text()
    assert re.search(rf"helm\.sh/helm/v4 {re.escape(HELM_VERSION)}\b", module)


def test_the_image_runs_herd_on_helm_4() -> None:
    assert "COPY --from=helm /out/helm /usr/local/bin/helm" in DOCKERFILE
    assert "HERD_HELM=/usr/local/bin/helm" in DOCKERFILE


def test_users_and_the_test_bed_share_the_dockerfile_through_its_build_arguments() -> None:
    # Users get SUSE BCI images by default; the test bed passes its own (e2e.testbed.image).
    assert "ARG BASE_IMAGE=registry.suse.com/bci/python:3.11\n" in DOCKERFILE
    assert "ARG HELM_BUILDER=registry.suse.com/bci/golang:" in DOCKERFILE
    assert 'ARG HELM_PREBUILT=""\n' in DOCKERFILE
    assert "USER 10001:10001\n" in DOCKERFILE


def test_the_build_context_admits_exactly_what_the_dockerfile_copies() -> None:
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    admitted = {line[1:] for line in ignore if line.startswith("!")}
    copied = {
        source
        for line in DOCKERFILE.splitlines()
        if line.startswith("COPY ") and "--from=" not in line
        for source in line.split()[1:-1]
    }
    assert "*" in ignore and copied == admitted, (copied, admitted)
