"""Child processes of the test bed: start, watch, stop, and find them again later.

Callers: `e2e.testbed.controlplane` (every etcd / apiserver / controller / kwok process)
and `e2e.testbed.__main__` (`down`, which runs in another process than `up`).

Every child runs in its own session, hence its own process group, so stopping it also
stops anything it forked, and a terminal's Ctrl-C or a dying pytest does not reach it
half-way. Each start appends "pid<TAB>name<TAB>executable<TAB>tier" to `<workdir>/pids`;
`down` and the atexit hook kill from that file, checking /proc first so a recycled pid
that now belongs to someone else is never signalled, and lower tiers first: clients
before the apiserver before etcd, because an apiserver whose etcd is already gone hangs
in its graceful shutdown until it is SIGKILLed.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple, TextIO

PIDFILE = "pids"
_PORT_RANGE = (20000, 32000)
_random = random.SystemRandom()
_STOP_GRACE_SECONDS = 10.0
_POLL_SECONDS = 0.1


class TestBedError(RuntimeError):
    """A test-bed process failed to start, died, or did not become ready in time."""

    __test__ = False  # not a pytest test class despite the name


class Recorded(NamedTuple):
    """One line of the pidfile."""

    pid: int
    name: str
    executable: str
    tier: int


@dataclass
class ManagedProcess:
    """One long-running child program with its log file."""

    name: str
    argv: Sequence[str]
    log: Path
    pidfile: Path
    env: dict[str, str] | None = None
    # Stop order for kill_recorded: higher tiers are servers of lower ones, stop later.
    tier: int = 0
    # The program to run when it is not argv[0]: a launcher (`unshare`) that ends by
    # exec'ing argv[0], so the pidfile's name is the program that finally runs.
    executable: str | None = None
    nice: int = 0  # added to the child's niceness (inherited across its execs)
    cwd: Path | None = None  # where it runs (Rancher writes its informer cache there)
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def start(self) -> None:
        if self.running():
            return
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            log.write(f"\n=== start {' '.join(self.argv)}\n".encode())
            log.flush()
            self.popen = subprocess.Popen(
                list(self.argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
                executable=self.executable,
                cwd=self.cwd,
            )
        if self.nice:
            os.setpriority(
                os.PRIO_PROCESS, self.popen.pid, os.getpriority(os.PRIO_PROCESS, 0) + self.nice
            )
        _record(self.pidfile, Recorded(self.popen.pid, self.name, self.argv[0], self.tier))

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, grace: float = _STOP_GRACE_SECONDS) -> None:
        """SIGTERM the process group, SIGKILL it after `grace` seconds (at once if 0)."""
        if self.popen is None:
            return
        pid = self.popen.pid
        if self.popen.poll() is None:
            _signal_group(pid, signal.SIGTERM if grace > 0 else signal.SIGKILL)
            try:
                self.popen.wait(timeout=grace or None)
            except subprocess.TimeoutExpired:
                _signal_group(pid, signal.SIGKILL)
                self.popen.wait()
        # The leader is gone; make sure no forked helper outlives it.
        _signal_group(pid, signal.SIGKILL)
        _forget(self.pidfile, pid)
        self.popen = None

    def check_alive(self) -> None:
        """Raise TestBedError with the log tail if the process has exited."""
        if self.popen is not None and self.popen.poll() is not None:
            raise TestBedError(
                f"{self.name} exited with code {self.popen.returncode}\n{self.describe()}"
            )

    def describe(self, lines: int = 25) -> str:
        return f"--- last {lines} lines of {self.log} ---\n{tail(self.log, lines)}"


def wait_for(
    what: str,
    condition: Callable[[], bool],
    timeout: float,
    watched: Iterable[ManagedProcess] = (),
) -> None:
    """Poll `condition` until true; fail fast if a watched process dies.

    The timeout error names `what` and shows the log tail of every watched process,
    because "timed out" alone never tells which of five programs was the problem.
    """
    watched = list(watched)
    deadline = time.monotonic() + timeout
    while True:
        for process in watched:
            process.check_alive()
        if condition():
            return
        if time.monotonic() > deadline:
            details = "\n".join(process.describe() for process in watched)
            raise TestBedError(f"timed out after {timeout:.0f}s waiting for {what}\n{details}")
        time.sleep(_POLL_SECONDS)


def tail(path: Path, lines: int) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 64 * 1024))
            text = handle.read().decode(errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now.

    Drawn at random below Linux's ephemeral range (32768+) rather than from bind(0):
    between this check and the server's own bind, an outgoing connection could take
    an ephemeral port, and several test beds starting at once would draw from the same
    small pool. A clash can still happen; callers retry on "address already in use".
    """
    for _ in range(200):
        port = _random.randrange(*_PORT_RANGE)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise TestBedError(f"no free port found in {_PORT_RANGE}")


def port_clash(error: BaseException) -> bool:
    """Whether a start failure was a port taken between free_port() and the bind."""
    return "address already in use" in str(error)


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def kill_recorded(workdir: Path, grace: float = _STOP_GRACE_SECONDS) -> list[str]:
    """Stop every process recorded in `<workdir>/pids`, tier by tier; return their names.

    Used by `down` and as a last resort after a crash: it does not need the
    ManagedProcess objects, only the pidfile.
    """
    pidfile = workdir / PIDFILE
    alive = [entry for entry in _read(pidfile) if _is_ours(entry.pid, entry.executable)]
    for tier in sorted({entry.tier for entry in alive}):
        _terminate([entry.pid for entry in alive if entry.tier == tier], grace)
    with contextlib.suppress(FileNotFoundError):
        pidfile.unlink()
    return [entry.name for entry in alive]


def recorded_alive(workdir: Path) -> list[str]:
    """Names of recorded processes that still run (for `status` and tests)."""
    return [e.name for e in _read(workdir / PIDFILE) if _is_ours(e.pid, e.executable)]


def _terminate(pids: list[int], grace: float) -> None:
    for pid in pids:
        _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_exists(pid) for pid in pids):
        time.sleep(_POLL_SECONDS)
    for pid in pids:
        _signal_group(pid, signal.SIGKILL)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    # Each child leads its own session, so its pgid equals its pid.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still "exists"; treat it as gone, it holds no ports.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def _is_ours(pid: int, executable: str) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError):
        return False
    return bool(cmdline) and cmdline[0].decode(errors="replace") == executable


@contextlib.contextmanager
def _locked(pidfile: Path, mode: Literal["a", "r+"]) -> Iterator[TextIO]:
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    with pidfile.open(mode) as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield handle


def _record(pidfile: Path, entry: Recorded) -> None:
    with _locked(pidfile, "a") as handle:
        handle.write("\t".join(map(str, entry)) + "\n")


def _forget(pidfile: Path, pid: int) -> None:
    if not pidfile.exists():
        return
    with _locked(pidfile, "r+") as handle:
        lines = handle.read().splitlines(keepends=True)
        kept = [line for line in lines if not line.startswith(f"{pid}\t")]
        handle.seek(0)
        handle.truncate()
        handle.writelines(kept)


def _read(pidfile: Path) -> list[Recorded]:
    try:
        lines = pidfile.read_text().splitlines()
    except FileNotFoundError:
        return []
    entries = []
    for line in lines:
        parts = line.split("\t")
        if len(parts) == 4 and parts[0].isdigit() and parts[3].isdigit():
            entries.append(Recorded(int(parts[0]), parts[1], parts[2], int(parts[3])))
    return entries
