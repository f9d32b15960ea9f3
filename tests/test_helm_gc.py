"""Go's collector for helm processes: Herd's setting unless the controller sets its own.

A fake `helm` script prints what it was given, so this runs without a test bed."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from herd.helm.environment import GO_GC, HelmEnvironment
from herd.settings import HelmSettings


def _helm_sees(tmp_path: Path) -> dict[str, str]:
    script = tmp_path / "helm"
    script.write_text('#!/bin/sh\necho "GOGC=$GOGC"\necho "GOMEMLIMIT=$GOMEMLIMIT"\n')
    script.chmod(0o755)
    env = HelmEnvironment(tmp_path / "home", settings=HelmSettings(executable=str(script)))
    output = asyncio.run(env.command().run(["env"]))
    return dict(line.split("=", 1) for line in output.decode().splitlines())


def test_helm_runs_with_herds_collector_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GOGC", raising=False)
    monkeypatch.delenv("GOMEMLIMIT", raising=False)
    assert _helm_sees(tmp_path) == GO_GC
    assert int(GO_GC["GOGC"]) > 100  # less collecting than Go's default


def test_the_controllers_own_go_settings_win_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOGC", "50")
    monkeypatch.delenv("GOMEMLIMIT", raising=False)
    # Not mixed: a GOGC of the operator's with Herd's memory limit is neither's choice.
    assert _helm_sees(tmp_path) == {"GOGC": "50", "GOMEMLIMIT": ""}
