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
