"""The controller's one fixed work directory: emptied at start, so nothing secret piles up.

Kubeconfigs (admin credentials), the helm home and chart caches live under one directory
per controller (`HERD_WORKDIR`, subdirectories `helm/`, `kubeconfigs/`, `charts/`). A
crash cannot clean up after itself, so the next start does: `prepare` removes whatever an
earlier run left there and recreates the directory 0700. Being fixed, the directory is
known to be this controller's own, unlike a fresh temp directory per run.

The kubernetes client writes a kubeconfig's client certificate and key to temp files
(removed only at a clean exit): `keep_temp_files_in` points the process's temp files into
the work directory, so a crash leaves them where the next start removes them.

Callers: the operator at start (`herd.operator`), before it builds the `KubeconfigStore`
and the `HelmEnvironment` on the subdirectories.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path


def prepare(path: Path) -> Path:
    """Empty `path` (or create it), mode 0700, and return it.

    Refuses a symlink or a non-directory, and the file system root or the home directory:
    the contents of `path` are removed without asking.
    """
    path = Path(path).absolute()
    if path.is_symlink():
        raise ValueError(f"work directory {path} is a symlink; refusing to empty it")
    if path == Path(path.anchor) or path == Path.home():
        raise ValueError(f"work directory {path} is not a private directory; refusing")
    if path.exists() and not path.is_dir():
        raise ValueError(f"work directory {path} is not a directory")
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
