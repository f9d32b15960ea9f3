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

Callers: the operator at start (`herd.operator`), before it builds the `KubeconfigStore`
and the `HelmEnvironment` on the subdirectories.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from pathlib import Path

from herd.errors import PermanentError

SUBDIRECTORIES = ("helm/cache", "helm/config", "helm/data", "helm/charts", "kubeconfigs", "tmp")
_HELD: dict[Path, int] = {}  # work directory -> the open, locked lock file (process lifetime)


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
