"""One work directory per process, owned: a second real process is refused, and files
removed under a running process are written again."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from herd.clusters.kubeconfigs import KubeconfigStore
from herd.helm.workdir import (
    SUBDIRECTORIES,
    WorkdirBusy,
    WorkdirUnlockable,
    ensure,
    lock_file,
    prepare,
)
from herd.plan.clusters import Cluster, KubeconfigRef

HOLDER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from herd.helm.workdir import prepare
    prepare(Path(sys.argv[1]))
    (Path(sys.argv[1]) / "kubeconfigs").mkdir()
    (Path(sys.argv[1]) / "kubeconfigs" / "c.kubeconfig").write_text("mine")
    print("holding", flush=True)
    sys.stdin.read()  # until the test closes our stdin
    """
)


def test_a_second_process_is_refused_and_leaves_the_first_ones_files(tmp_path: Path) -> None:
    workdir = tmp_path / "herd-work"
    first = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(workdir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert first.stdout is not None and first.stdout.readline() == "holding\n"
        second = subprocess.run(
            [sys.executable, "-c", HOLDER, str(workdir)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert second.returncode != 0
        assert f"is in use by another herd process (pid {first.pid}" in second.stderr
        assert (workdir / "kubeconfigs" / "c.kubeconfig").read_text() == "mine"
    finally:
        assert first.stdin is not None
        first.stdin.close()
        first.wait(30)
    # The first one ended (its lock with it): the directory is free again.
    assert prepare(workdir) == workdir.absolute()
    assert lock_file(workdir.absolute()).exists()
    assert not (workdir / "kubeconfigs").exists()  # emptied for this process


def test_a_lock_held_in_this_process_is_refused_to_another_open(tmp_path: Path) -> None:
    workdir = tmp_path / "w"
    fd = os.open(lock_file(workdir.absolute()), os.O_RDWR | os.O_CREAT, 0o600)
    os.write(fd, b"4242\n")
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with pytest.raises(WorkdirBusy, match="pid 4242"):
            prepare(workdir)
    finally:
        os.close(fd)


def test_a_work_directory_whose_lock_cannot_be_made_is_refused_with_the_fix(
    tmp_path: Path,
) -> None:
    # As a mount on a read-only root filesystem (HERD_WORKDIR=/run/herd with /run
    # read-only): the lock file beside it cannot be created. Here its parent is a file,
    # which refuses even root.
    (tmp_path / "run").write_text("")
    with pytest.raises(WorkdirUnlockable, match="subdirectory of a writable directory"):
        prepare(tmp_path / "run" / "herd")


async def test_a_removed_work_directory_is_made_again_and_kubeconfigs_rewritten(
    tmp_path: Path,
) -> None:
    workdir = prepare(tmp_path / "w")
    ensure(workdir)
    assert all((workdir / sub).is_dir() for sub in SUBDIRECTORIES)
    source = tmp_path / "fleet.yaml"
    source.write_text(
        yaml.safe_dump(
            {
                "clusters": [{"name": "k", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": c, "context": {"cluster": "k", "user": "u"}} for c in "ab"],
                "current-context": "a",
            }
        )
    )
    cluster = Cluster("f", "f", {}, True, "file", KubeconfigRef.file(source, "b"))
    store = KubeconfigStore(None, workdir / "kubeconfigs")
    written = await store.path(cluster)
    shutil.rmtree(workdir)  # a second process's start-up, a cleanup job
    again = await store.path(cluster)
    assert again == written and again.exists()
    ensure(workdir)
    assert (workdir / "tmp").is_dir() and (workdir / "helm" / "cache").is_dir()
