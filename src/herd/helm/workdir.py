"""The controller's one fixed work directory: emptied at start, so nothing secret piles up.

Kubeconfigs (admin credentials), the helm home and chart caches live under one directory
per controller (`HERD_WORKDIR`, subdirectories `helm/`, `kubeconfigs/`, `charts/`). A
crash cannot clean up after itself, so the next start does: `prepare` removes whatever an
earlier run left there and recreates the directory 0700. Being fixed, the directory is
known to be this controller's own, unlike a fresh temp directory per run.

The kubernetes client writes a kubeconfig's client certificate and key to temp files
(removed only at a clean exit): `keep_temp_files_in` points the process's temp files into
the work directory, so a crash leaves them where the next start removes them.

One process per directory: `prepare` takes an `fcntl` lock (`lock_file`, beside the
directory) before it empties anything, and a second process is refused with the first
one's pid. A directory removed under a running controller is made again (`ensure`, every
second), and its owners write their files again on next use.

Proof that the directory's previous process is gone (`take_over`): a second lock file,
whose open file every helm process of the controller inherits (`inherited`, passed by
`herd.helm.environment.HelmCommand`), so it is free only once the process and every helm
it started have ended, however they ended. The holder writes its Lease identity into it;
the next process that gets the lock reads the identity of a process that can act no
more, and may take a Lease that identity holds at once (`herd.operator.leader`) instead of
waiting a Lease duration: what a container restarted in its pod (the work directory is an
`emptyDir`, which outlives the container) needs to recover in seconds. A live helm of
the previous process (one orphaned by a SIGKILL of the controller alone) keeps the lock:
no proof, and the Lease is waited out as before.

Callers: the operator at start (`herd.operator`), before it builds the `KubeconfigStore`
and the `HelmEnvironment` on the subdirectories.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path

from herd.errors import PermanentError

SUBDIRECTORIES = ("helm/cache", "helm/config", "helm/data", "helm/charts", "kubeconfigs", "tmp")
_HELD: dict[Path, int] = {}  # work directory -> the open, locked lock file (process lifetime)
_ACTORS: list[int] = []  # the locked actors file, inherited by every helm process
_IDENTITY = re.compile(r"[A-Za-z0-9._-]{1,300}")  # a Lease identity (`leader.identity`)


class WorkdirBusy(PermanentError, ValueError):
    """Another live process holds the work directory."""


class WorkdirUnlockable(PermanentError, ValueError):
    """The lock file beside the work directory cannot be created (its parent is read-only)."""


def prepare(path: Path) -> Path:
    """Lock `path` for this process, empty it (or create it), mode 0700, and return it.

    Refuses a symlink or a non-directory, the file system root or the home directory (the
    contents of `path` are removed without asking), and a directory another live process
    holds (`WorkdirBusy`): `lock` comes first, so a second controller never empties the
    first one's kubeconfigs.
    """
    path = Path(path).absolute()
    if path.is_symlink():
        raise ValueError(f"work directory {path} is a symlink; refusing to empty it")
    if path == Path(path.anchor) or path == Path.home():
        raise ValueError(f"work directory {path} is not a private directory; refusing")
    if path.exists() and not path.is_dir():
        raise ValueError(f"work directory {path} is not a directory")
    lock(path)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
    return path


def keep_temp_files_in(path: Path) -> Path:
    """Make `path` (created 0700) the directory of this process's temp files."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    tempfile.tempdir = str(path)
    return path


def lock_file(path: Path) -> Path:
    """Beside the work directory, so that removing the directory does not free it."""
    return path.parent / f".{path.name}.lock"


def lock(path: Path) -> None:
    """Hold `path` for this process (an `fcntl` lock, released when the process ends, even
    killed); raises `WorkdirBusy` naming the holder's pid when another process has it."""
    if path in _HELD:
        return
    target = lock_file(path)
    try:
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(target, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as error:
        # E.g. HERD_WORKDIR is itself a mount on a read-only root filesystem.
        raise WorkdirUnlockable(
            f"cannot create the lock file {target} beside the work directory {path} "
            f"({error.strerror}): make HERD_WORKDIR a subdirectory of a writable directory"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise WorkdirBusy(
            f"work directory {path} is in use by another herd process (pid {holder}, lock "
            f"{target}); give this one its own HERD_WORKDIR"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _HELD[path] = fd


def ensure(path: Path) -> None:
    """Recreate the work directory and its subdirectories if something removed them (0700):
    what lived there (kubeconfigs, helm's home) is written again by its owner on next use."""
    for sub in SUBDIRECTORIES:
        (path / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)


def actors_file(path: Path) -> Path:
    """Beside the work directory, as `lock_file`: its identity outlives an emptied one."""
    return path.parent / f".{path.name}.actors"


def take_over(path: Path, me: str) -> str | None:
    """Hold the actors lock of `path` for this process and its helm children, and return
    the identity its previous holder wrote, which is then known gone with every helm it
    started; None when a process of that holder still runs (the lock is taken), when there
    was no holder or when the file does not hold an identity. `me` is written for the next
    process only once this one holds the lock."""
    target = actors_file(path)
    # Read-only: the helm processes inherit this one (flock does not need write access),
    # so none of them can write an identity of its choosing for the next process to trust.
    try:
        fd = os.open(target, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError:  # a symlink (ELOOP), a directory, ...: no proof, nothing held
        return None
    try:
        if not _private(os.fstat(fd)):  # e.g. planted in a shared /tmp by another user
            raise BlockingIOError
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError: a holder runs
        previous = os.pread(fd, 512, 0).decode("ascii", errors="replace").strip()
        # The same file, not whatever the path names now; closing this other open file of
        # it leaves the flock of `fd` held.
        writer = os.open(f"/proc/self/fd/{fd}", os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
        try:
            os.write(writer, f"{me}\n".encode())
        finally:
            os.close(writer)
    except OSError:  # no proof, nothing held: the Lease is waited out as without the file
        os.close(fd)
        return None
    _ACTORS.append(fd)
    if not _IDENTITY.fullmatch(previous) or filesystem(target) not in LOCAL_FILESYSTEMS:
        return None  # a network file system's lock can be lost while its holder runs
    return previous


LOCAL_FILESYSTEMS = frozenset(
    {"tmpfs", "ramfs", "ext2", "ext3", "ext4", "xfs", "btrfs", "overlay", "f2fs", "zfs"}
)


def filesystem(path: Path, mountinfo: str | None = None) -> str:
    """The type of the file system `path` is on ("" when unknown), from `mountinfo`
    (default: this process's `/proc/self/mountinfo`): the longest mount point above it."""
    if mountinfo is None:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text()
        except OSError:
            return ""
    real = os.path.realpath(path)
    found, depth = "", -1
    for line in mountinfo.splitlines():
        head, _, tail = line.partition(" - ")
        fields = head.split()
        if len(fields) < 5 or not tail:
            continue
        mount = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
        inside = real == mount or real.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) > depth:
            found, depth = tail.split()[0], len(mount)
    return found


def _private(info: os.stat_result) -> bool:
    """A regular file of this user's that nobody else may write."""
    return stat.S_ISREG(info.st_mode) and info.st_uid == os.geteuid() and not info.st_mode & 0o022


def inherited() -> tuple[int, ...]:
    """The file descriptors every helm process must inherit (`pass_fds`): the actors lock
    of `take_over`, so that it stays held while any of them runs."""
    return tuple(_ACTORS)
