"""The flags that changed between Helm 3 and Helm 4, mapped in one place (`HelmDialect`)."""

from __future__ import annotations

import pytest

from herd.helm.environment import HelmDialect

HELM3, HELM4 = HelmDialect(3), HelmDialect(4)


@pytest.mark.parametrize(
    ("version", "major"),
    [("v3.17.3", 3), ("v3.22.0\n", 3), ("v4.3.2", 4), ("v4.0+unreleased", 4), ("v5.0.0", 4)],
)
def test_major_version_from_helm_version(version: str, major: int) -> None:
    assert HelmDialect.from_version(version).major == major


@pytest.mark.parametrize(
    ("dialect", "wait", "atomic", "force", "flags"),
    [
        (HELM3, False, False, False, []),
        (HELM4, False, False, False, []),
        (HELM3, True, False, False, ["--wait", "--wait-for-jobs"]),
        (HELM4, True, False, False, ["--wait=watcher", "--wait-for-jobs"]),
        (HELM3, True, True, False, ["--wait", "--wait-for-jobs", "--atomic"]),
        (HELM4, True, True, False, ["--wait=watcher", "--wait-for-jobs", "--rollback-on-failure"]),
        (HELM3, False, False, True, ["--force"]),
        (HELM4, False, False, True, ["--force-replace"]),
    ],
)
def test_upgrade_flags(
    dialect: HelmDialect, wait: bool, atomic: bool, force: bool, flags: list[str]
) -> None:
    assert dialect.upgrade(wait=wait, atomic=atomic, force=force) == flags


def test_uninstall_and_rollback_wait() -> None:
    # Helm 4's bare `--wait` means watcher too, but Herd names the strategy.
    assert (HELM3.wait, HELM4.wait) == (["--wait"], ["--wait=watcher"])
