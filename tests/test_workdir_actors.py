"""The actors lock of `herd.helm.workdir.take_over`, with real processes: the next process
learns that its predecessor is gone only when the predecessor and every helm it started
have ended (a SIGKILL of the controller alone leaves its helm running: no proof)."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from herd.helm.workdir import LOCAL_FILESYSTEMS, actors_file, filesystem

ACTOR = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from herd.helm.environment import HelmCommand
    from herd.helm.workdir import take_over
    print(take_over(Path(sys.argv[1]), sys.argv[2]), flush=True)
    if len(sys.argv) > 3:  # a long "helm" (sys.argv[3]), as HelmCommand runs every helm
        asyncio.run(HelmCommand(sys.argv[3], {}).run(["60"]))
    """
)
FIRST, SECOND, THIRD = "pod-a_12_abc123", "pod-a_1_def456", "pod-a_1_0a0b0c"


def actor(workdir: Path, me: str, helm: Path | None = None) -> subprocess.Popen[str]:
    """A controller process of `workdir` (its own process group, as a pod's container)."""
    argv = [sys.executable, "-c", ACTOR, str(workdir), me, *([str(helm)] if helm else [])]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, start_new_session=True)


def proof(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    return process.stdout.readline().strip()


def slow_helm(tmp_path: Path) -> tuple[Path, Path]:
    """A "helm" that records its pid and becomes `sleep` (exec keeps inherited files)."""
    script, pidfile = tmp_path / "helm", tmp_path / "helm.pid"
    script.write_text(f'#!/bin/sh\necho $$ > {pidfile}\nexec sleep "$1"\n')
    script.chmod(0o700)
    return script, pidfile


def wait_for(what: str, probe: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not probe():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"


def test_the_next_process_learns_its_predecessor_is_gone(tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    first = actor(workdir, FIRST)
    assert proof(first) == "None"  # nobody before it
    first.wait(30)
    second = actor(workdir, SECOND)
    assert proof(second) == FIRST
    second.wait(30)
    assert stat.S_IMODE(actors_file(workdir).stat().st_mode) == 0o600
    assert actors_file(workdir).read_text() == f"{SECOND}\n"


def test_a_live_helm_of_a_killed_controller_holds_the_proof_back(tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    helm, pidfile = slow_helm(tmp_path)
    first = actor(workdir, FIRST, helm)
    try:
        assert proof(first) == "None"
        wait_for("the helm to run", lambda: pidfile.exists() and pidfile.read_text().strip())
        orphan = int(pidfile.read_text())
        os.kill(first.pid, signal.SIGKILL)  # the controller alone: its helm runs on
        first.wait(30)
        assert alive(orphan)
        second = actor(workdir, SECOND)
        assert proof(second) == "None", "a live helm of the predecessor must hold it back"
        second.wait(30)
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the orphan, in the controller's group
    wait_for("the orphaned helm to end", lambda: not alive(orphan))
    third = actor(workdir, THIRD)
    assert proof(third) == FIRST  # the second never held the lock, so never wrote
    third.wait(30)


def test_a_file_without_an_identity_proves_nothing(tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    for text in ("", "two\nlines", "x" * 400, "spaces are not an identity", "\xff\xfe"):
        actors_file(workdir).parent.mkdir(parents=True, exist_ok=True)
        actors_file(workdir).write_text(text, errors="surrogateescape")
        process = actor(workdir, FIRST)
        assert proof(process) == "None", text
        process.wait(30)


def test_a_helm_cannot_write_the_identity_the_next_process_trusts(tmp_path: Path) -> None:
    """What a helm inherits is read-only: a child that tries to forge a holder fails."""
    workdir = tmp_path / "work"
    forger = tmp_path / "helm"
    forger.write_text(  # exit 3: nothing inherited; 7: forged; 0: inherited, write refused
        "#!/bin/sh\nfound=3\nfor fd in /proc/self/fd/*; do\n"
        '  [ "$(readlink "$fd")" = "' + str(actors_file(workdir)) + '" ] || continue\n'
        '  found=0; n=$(basename "$fd"); echo pod-b_34_def456 2>/dev/null >&"$n" && exit 7\n'
        'done\nexit "$found"\n'
    )
    forger.chmod(0o700)
    first = actor(workdir, FIRST, forger)
    assert proof(first) == "None"
    assert first.wait(30) == 0, "the helm wrote to the actors file"
    second = actor(workdir, SECOND)
    assert proof(second) == FIRST
    second.wait(30)


MOUNTINFO = "\n".join(
    [
        "22 1 0:21 / / rw,relatime shared:1 - overlay overlay rw",
        "30 22 0:25 / /run rw,nosuid - tmpfs tmpfs rw",
        r"31 30 0:26 / /run/herd\040work rw - nfs4 server:/export rw",
        "32 22 0:27 / /running rw - ext4 /dev/sda1 rw",
    ]
)


def test_the_file_system_of_a_path_is_its_deepest_mount() -> None:
    assert filesystem(Path("/run/x"), MOUNTINFO) == "tmpfs"
    assert filesystem(Path("/run/herd work/.work.actors"), MOUNTINFO) == "nfs4"
    assert filesystem(Path("/running/a"), MOUNTINFO) == "ext4"  # not under /run
    assert filesystem(Path("/srv"), MOUNTINFO) == "overlay"
    assert filesystem(Path("/srv"), "garbage\n- \n") == ""
    assert filesystem(Path("/srv"), MOUNTINFO) in LOCAL_FILESYSTEMS
    assert "nfs4" not in LOCAL_FILESYSTEMS


def test_this_machines_work_directories_are_on_a_local_file_system(tmp_path: Path) -> None:
    """Else the proofs above would be None for the file system, not for the lock."""
    assert filesystem(tmp_path) in LOCAL_FILESYSTEMS


def test_a_planted_file_or_link_proves_nothing(tmp_path: Path) -> None:
    """A shared /tmp: another user's file (here: one others may write) or a symlink."""
    workdir = tmp_path / "work"
    planted = actors_file(workdir)
    planted.parent.mkdir(parents=True, exist_ok=True)
    planted.write_text(f"{FIRST}\n")
    planted.chmod(0o666)
    process = actor(workdir, SECOND)
    assert proof(process) == "None"
    process.wait(30)
    assert planted.read_text() == f"{FIRST}\n"  # not written either
    planted.unlink()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text(f"{FIRST}\n")
    planted.symlink_to(elsewhere)
    process = actor(workdir, SECOND)
    assert proof(process) == "None"  # O_NOFOLLOW: not followed, nothing read or written
    process.wait(30)
    assert elsewhere.read_text() == f"{FIRST}\n"
