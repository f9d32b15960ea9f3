"""Shared fault utilities: kill a process group, count leftover secrets, read helm history.

Role: the black-box measurements of the fault suite. Nothing here knows Herd's code:
processes are seen through /proc, releases through `helm` itself, secrets as files on
disk. Callers: `benchmarks/faults.py` (and its `_faults_*` helpers),
`e2e/test_fuzz_operator.py`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from e2e.testbed.chartrepo import helm_binary, helm_list_all

T = TypeVar("T")
# What Herd writes secrets into: kubeconfigs, helm homes (repository credentials, cache)
# and pulled charts. Today they are mkdtemp() dirs in TMPDIR; with HERD_WORKDIR they are
# subdirectories of the work directory (kubeconfigs/, helm/, charts/).
SECRET_DIR_PREFIXES = ("herd-kubeconfigs-", "herd-helm-", "herd-charts-")
PENDING = ("pending-install", "pending-upgrade", "pending-rollback")


# -- processes ------------------------------------------------------------------------------


def group_members(pgid: int) -> list[tuple[int, str]]:
    """(pid, command name) of every live process in process group `pgid`."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # comm may hold spaces and parentheses: split after the last ')'.
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        state, group = fields[0], int(fields[2])
        if group == pgid and state != "Z":
            members.append((int(entry.name), comm))
    return members


def kill_group(pgid: int) -> list[str]:
    """SIGKILL a whole process group at once, as a pod kill does; the names it held."""
    names = [comm for pid, comm in group_members(pgid) if pid != pgid]
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    return names


# -- secrets on disk ------------------------------------------------------------------------


@dataclass(frozen=True)
class FileId:
    """One version of one file: a file rewritten or recreated at the same path differs."""

    path: Path
    inode: int
    mtime_ns: int


def secret_files(tmpdir: Path, workdir: Path | None) -> set[FileId]:
    """Every regular file below the controller's own TMPDIR and below its HERD_WORKDIR.

    Each controller of the fault suite gets a private TMPDIR, so everything there is its
    own: Herd's herd-kubeconfigs-*/herd-helm-*/herd-charts-* directories, and the
    kubernetes client's tmp* files, which hold client certificates and private keys
    taken from kubeconfigs.
    """
    roots = [tmpdir] + ([workdir] if workdir is not None and workdir.exists() else [])
    found = set()
    for root in roots:
        for path in root.rglob("*"):
            try:
                if path.is_file() and not path.is_symlink():
                    stat = path.stat()
                    found.add(FileId(path, stat.st_ino, stat.st_mtime_ns))
            except OSError:
                continue  # removed while walking: not left over
    return found


def kind_of(file: FileId) -> str:
    """What a leftover file is, for the report (its content is never printed)."""
    parts = file.path.parts
    if any(p.startswith("herd-kubeconfigs-") or p == "kubeconfigs" for p in parts):
        return "kubeconfig"
    if any(p.startswith("herd-helm-") or p == "helm" for p in parts):
        return "helm home"
    if any(p.startswith("herd-charts-") or p == "charts" for p in parts):
        return "chart cache"
    try:
        head = file.path.read_bytes()[:64]
    except OSError:
        return "gone"
    if b"PRIVATE KEY" in head:
        return "private key"
    if b"CERTIFICATE" in head:
        return "certificate"
    return "other"


def describe(files: Iterable[FileId]) -> str:
    kinds: dict[str, int] = {}
    for file in files:
        kind = kind_of(file)
        kinds[kind] = kinds.get(kind, 0) + 1
    return ", ".join(f"{kind} {n}" for kind, n in sorted(kinds.items())) or "none"


def secret_dirs(tmpdir: Path) -> list[Path]:
    return sorted(p for p in tmpdir.iterdir() if p.name.startswith(SECRET_DIR_PREFIXES))


# -- helm, seen from outside ----------------------------------------------------------------


def helm_json(kubeconfig: Path, *args: str) -> Any:
    done = subprocess.run(
        [helm_binary(), "--kubeconfig", str(kubeconfig), *args, "-o", "json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if done.returncode:
        raise RuntimeError(f"helm {' '.join(args)}: {done.stderr.strip()}")
    return json.loads(done.stdout or "null")


def releases(kubeconfig: Path, namespace: str) -> dict[str, dict[str, Any]]:
    """Release name -> `helm list` row, every state included."""
    rows = helm_json(kubeconfig, *helm_list_all(), "-n", namespace) or []
    return {row["name"]: row for row in rows}


def history(kubeconfig: Path, namespace: str, release: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = helm_json(
        kubeconfig, "history", release, "-n", namespace, "--max", "1000"
    )
    return rows or []


@dataclass(frozen=True)
class HelmTally:
    """Revisions of a set of releases, by what became of them."""

    revisions: int
    failed: int
    pending: int
    by_release: dict[str, int]


def tally(kubeconfigs: dict[str, Path], namespace: str, since: float = 0.0) -> HelmTally:
    """Revisions (updated at or after `since`, epoch seconds) of every release in namespace."""
    revisions = failed = pending = 0
    by_release: dict[str, int] = {}
    for cluster, kubeconfig in kubeconfigs.items():
        for name in releases(kubeconfig, namespace):
            rows = [r for r in history(kubeconfig, namespace, name) if _epoch(r) >= since]
            by_release[f"{cluster}/{name}"] = len(rows)
            revisions += len(rows)
            failed += sum(r["status"] == "failed" for r in rows)
            pending += sum(r["status"] in PENDING for r in rows)
    return HelmTally(revisions, failed, pending, by_release)


def pending_releases(kubeconfigs: dict[str, Path], namespace: str) -> list[str]:
    return [
        f"{cluster}/{name}"
        for cluster, kubeconfig in kubeconfigs.items()
        for name, row in releases(kubeconfig, namespace).items()
        if row["status"] in PENDING
    ]


def _epoch(row: dict[str, Any]) -> float:
    # helm prints e.g. "2026-12-01T09:30:12.123456789Z" or with an offset.
    stamp = re.sub(r"(\.\d{6})\d+", r"\1", str(row.get("updated", "")))
    stamp = stamp.replace("Z", "+00:00")
    try:
        return datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return 0.0


# -- logs -----------------------------------------------------------------------------------

CRASH_PATTERNS = ("Traceback", "Reconcile failed", "Unhandled exception", "StopIteration")
CANCEL_PATTERNS = ("CancelledError", "cancelled", "canceled", "unhandled errors in a TaskGroup")
DUPLICATE_PATTERNS = ("already exists", "another operation", "is in progress")


def matching_lines(text: str, patterns: Iterable[str]) -> list[str]:
    wanted = tuple(patterns)
    return [line for line in text.splitlines() if any(p in line for p in wanted)]
