"""Starting, health-checking and stopping the lab's server processes.

Each server runs in its own session, hence its own process group: gunicorn forks workers and
an API variant may spawn a process pool, and signalling the group reaches all of them, while
a Ctrl-C in the terminal reaches only the runner, which then stops everything in order.
"""

import contextlib
import ctypes
import functools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import psutil

from services.lab.netcheck import ServerError, wait_healthy

_PR_SET_PDEATHSIG = 1
_GONE = (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


def _die_with_parent(parent_pid: int) -> None:
    """preexec_fn (Linux): have the kernel SIGTERM the server when the runner dies, even by
    SIGKILL; otherwise servers in their own sessions would outlive it, holding the ports."""
    if _LIBC is None:
        return
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent_pid:  # the runner died before prctl() took effect
        os.kill(os.getpid(), signal.SIGTERM)


@dataclass
class ServerProcess:
    """One server command, started in a new session so its whole process group can be
    stopped. `env` is layered over the current environment, so user overrides pass through."""

    name: str
    cmd: list[str]
    env: Mapping[str, str] = field(default_factory=dict)
    health_url: str | None = None
    log_path: Path | None = None  # None: inherit the runner's stdout/stderr
    cwd: Path | None = None
    # Prefixes of inherited variables the server must not see, e.g. ("MOCK_",) so that a
    # benchmark or a test measures the upstream's defaults whatever the shell exports.
    unset_prefixes: tuple[str, ...] = ()
    _popen: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _log: IO[bytes] | None = field(default=None, init=False, repr=False)
    # Set once the group is confirmed gone: never signal it again, its pgid may be reused.
    _stopped: bool = field(default=False, init=False, repr=False)

    def start(self) -> None:
        if self._popen is not None:
            raise RuntimeError(f"{self.name} already started")
        env = {k: v for k, v in os.environ.items() if not k.startswith(self.unset_prefixes)}
        # Python servers block-buffer stdout into a file; unbuffered keeps logs live.
        env.setdefault("PYTHONUNBUFFERED", "1")
        env.update(self.env)
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.log_path.open("wb")
        try:
            self._popen = subprocess.Popen(
                self.cmd,
                env=env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT if self._log is not None else None,
                start_new_session=True,
                # Runs in the child between fork and exec; it only calls async-signal-safe
                # syscalls, and libc was loaded beforehand in the parent.
                preexec_fn=functools.partial(_die_with_parent, os.getpid()),
            )
        except BaseException:
            if self._log is not None:
                self._log.close()
                self._log = None
            raise

    @property
    def started(self) -> bool:
        return self._popen is not None

    @property
    def stopped(self) -> bool:
        return self._stopped

    @property
    def pid(self) -> int:
        if self._popen is None:
            raise RuntimeError(f"{self.name} not started")
        return self._popen.pid

    def returncode(self) -> int | None:
        """Exit status of the group leader, None while it runs (or was never started)."""
        return None if self._popen is None else self._popen.poll()

    def is_running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no log file: output went to the terminal)"
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:]) or "(log is empty)"

    def wait_healthy(self, timeout: float = 30.0) -> None:
        if self.health_url is None:
            raise ValueError(f"{self.name} has no health_url")
        wait_healthy(self.health_url, timeout, proc=self)

    def signal_group(self, sig: signal.Signals) -> None:
        """Send `sig` to the whole process group; a vanished group is not an error."""
        if self._popen is None or self._stopped:
            return
        try:
            # The leader's pid is the group id (new session), valid even after it exited.
            os.killpg(self._popen.pid, sig)
        except ProcessLookupError:
            pass

    def group_alive(self) -> bool:
        """True while any non-zombie process of the group exists (reaping the leader)."""
        if self._popen is None or self._stopped:
            return False
        self._popen.poll()
        return _group_alive(self._popen.pid)

    def _finish(self) -> None:
        if self._popen is not None:
            # Reap the leader so no zombie is left behind. wait(), not poll(): just after a
            # SIGKILL the leader may not be reapable yet, and an unreaped Popen warns at exit.
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._popen.wait(timeout=2)
        self._stopped = not _group_alive(self.pid)
        if self._log is not None:
            self._log.close()
            self._log = None

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM the group, wait up to `timeout`, then SIGKILL. Idempotent."""
        stop_all([self], timeout)


def stop_all(procs: Iterable[ServerProcess], timeout: float = 5.0) -> None:
    """Stop several servers at once: all get SIGTERM first, so the total wait is one
    `timeout`, not one per server; stragglers get SIGKILL."""
    procs = [p for p in procs if p.started and not p.stopped]
    for proc in procs:
        proc.signal_group(signal.SIGTERM)
    _wait_groups_gone(procs, time.monotonic() + timeout)
    for proc in procs:
        if proc.group_alive():
            proc.signal_group(signal.SIGKILL)
    _wait_groups_gone(procs, time.monotonic() + 2.0)
    for proc in procs:
        proc._finish()


def _wait_groups_gone(procs: list[ServerProcess], deadline: float) -> None:
    while any(p.group_alive() for p in procs) and time.monotonic() < deadline:
        time.sleep(0.05)


def _group_alive(pgid: int) -> bool:
    """True while a process of group `pgid` exists that is not a zombie: orphaned zombies
    no longer run, they only wait for a (possibly lazy) init to reap them."""
    for pid in psutil.pids():
        try:
            if os.getpgid(pid) == pgid and psutil.Process(pid).status() not in _GONE:
                return True
        except (OSError, psutil.Error):  # exited while we scanned, or not ours to inspect
            continue
    return False


class Supervisor:
    """Context manager owning several servers: whatever happens (failed start, exception,
    Ctrl-C), every server started through it is stopped on exit."""

    def __init__(self, stop_timeout: float = 5.0) -> None:
        self.procs: list[ServerProcess] = []
        self.stop_timeout = stop_timeout

    def start(self, *procs: ServerProcess, health_timeout: float = 30.0) -> None:
        """Start all of `procs`, then wait for each to be healthy (they boot in parallel)."""
        for proc in procs:
            # Registered before start(), so that a start that half-happened is still stopped.
            self.procs.append(proc)
            proc.start()
        for proc in procs:
            if proc.health_url is not None:
                proc.wait_healthy(health_timeout)

    def check(self) -> None:
        """Raise ServerError if a server has exited on its own."""
        for proc in self.procs:
            if not proc.is_running():
                raise ServerError(
                    f"{proc.name} exited unexpectedly with status {proc.returncode()}; "
                    f"last log lines:\n{proc.log_tail()}"
                )

    def stop_all(self) -> None:
        stop_all(self.procs, self.stop_timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all()
