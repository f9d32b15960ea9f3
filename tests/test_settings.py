"""Configuration read once (`herd.settings`), and helm's environment passed per process."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from herd.helm.environment import HelmEnvironment, ReleaseNotFound
from herd.operator.config import OperatorConfig
from herd.settings import HelmSettings, Settings

FAKE_HELM = """#!/bin/sh
if [ "$1" = fail ]; then
  echo "Error: uninstall: Release not loaded: web: release: not found" >&2
  exit 1
fi
echo "cache=$HELM_CACHE_HOME driver=${HELM_DRIVER:-unset} args=$*"
"""


def test_defaults_and_the_operator_config_built_from_them() -> None:
    settings = Settings.from_env({})
    assert settings == Settings()
    assert settings.helm == HelmSettings(None)
    config = OperatorConfig.of(settings)
    assert config == OperatorConfig()
    assert (config.max_clusters, config.max_helm) == (10, 8)


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("HERD_MAX_HELM", "many"),
        ("HERD_RETRY_SECONDS", "soon"),
        ("HERD_SHARD", "Bad_Shard"),
        ("HERD_TENANCY", "closed"),
        ("HERD_ALLOW_EXEC_KUBECONFIGS", "yes"),
    ],
)
def test_a_bad_variable_is_named(name: str, raw: str) -> None:
    with pytest.raises(ValueError, match=name):
        Settings.from_env({name: raw})


def test_values_are_typed() -> None:
    settings = Settings.from_env(
        {
            "HERD_MAX_HELM": "3",
            "HERD_STUCK_SECONDS": "90",
            "HERD_RANCHER_NAMESPACES": " a, ,b",
            "HERD_WORKDIR": "/srv/herd",
            "HERD_HELM": "/opt/helm",
            "HERD_TEST_STALL_CHECKS": "1",
        }
    )
    assert (settings.max_helm, settings.stuck_seconds) == (3, 90.0)
    assert settings.rancher_namespaces == ("a", "b")
    assert settings.workdir == Path("/srv/herd")
    assert settings.helm.executable == "/opt/helm"
    config = OperatorConfig.of(settings)
    assert (config.max_helm, config.stuck_seconds, config.helm.executable) == (3, 90.0, "/opt/helm")
    assert config.worker_limits().stall


@pytest.fixture
def fake_helm(tmp_path: Path) -> HelmSettings:
    helm = tmp_path / "helm"
    helm.write_text(FAKE_HELM)
    helm.chmod(helm.stat().st_mode | stat.S_IXUSR)
    return HelmSettings(str(helm))


async def test_helm_gets_its_home_per_process_and_this_process_keeps_its_own(
    fake_helm: HelmSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HELM_DRIVER", "memory")
    monkeypatch.delenv("HELM_CACHE_HOME", raising=False)
    before = dict(os.environ)
    env = HelmEnvironment(settings=fake_helm)
    try:
        output = await env.command().run(["list", "--", "a b"])
        assert dict(os.environ) == before  # nothing written into this process's environment
        cache = env.home / "cache"
        assert output.decode().strip() == f"cache={cache} driver=unset args=list -- a b"
        with pytest.raises(ReleaseNotFound):
            await env.command().run(["fail"])
    finally:
        env.close()


def test_herd_helm_is_read_when_no_settings_are_given(
    fake_helm: HelmSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HERD_HELM", str(fake_helm.executable))
    env = HelmEnvironment()
    try:
        assert env.executable == fake_helm.executable
    finally:
        env.close()
