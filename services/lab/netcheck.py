"""Loopback checks around the lab's servers: is a port free, does a server answer healthy."""

import errno
import socket
import time
from collections.abc import Mapping
from typing import Protocol

import httpx


class PortBusyError(RuntimeError):
    """A port the lab needs is already taken by some other process."""


class ServerError(RuntimeError):
    """A server exited early or never became healthy; the message carries its log tail."""


class Watched(Protocol):
    """What wait_healthy needs of a server process to fail fast (procs.ServerProcess)."""

    @property
    def name(self) -> str: ...
    def is_running(self) -> bool: ...
    def returncode(self) -> int | None: ...
    def log_tail(self, lines: int = 30) -> str: ...


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Return True when `host:port` can be bound for listening right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Same option uvicorn/gunicorn set: a TIME_WAIT leftover from the previous run must not
        # count as busy, while a live listener (also one on 0.0.0.0) still makes bind() fail.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def ensure_ports_free(ports: Mapping[str, int], host: str = "127.0.0.1") -> None:
    """Raise PortBusyError naming every busy port (label -> port) before anything starts."""
    busy = [f"{port} ({label})" for label, port in ports.items() if not port_is_free(port, host)]
    if busy:
        raise PortBusyError(
            f"port(s) already in use on {host}: {', '.join(busy)}. "
            "Stop whatever listens there (e.g. `ss -ltnp | grep :PORT`) or a previous lab run."
        )


def free_port(host: str = "127.0.0.1") -> int:
    """An ephemeral port that is free now (racy by nature; fine for tests on loopback)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_healthy(url: str, timeout: float = 30.0, proc: Watched | None = None) -> None:
    """Poll `url` until it answers 200, else raise ServerError. With `proc`, fail as soon as
    it exits, quoting its log tail (a crash at start-up must not cost the whole timeout)."""
    deadline = time.monotonic() + timeout
    last = "no attempt yet"
    # trust_env=False: an HTTP(S)_PROXY in the environment must not intercept loopback.
    with httpx.Client(timeout=2.0, trust_env=False) as client:
        while True:
            if proc is not None and not proc.is_running():
                raise ServerError(
                    f"{proc.name} exited with status {proc.returncode()} before {url} "
                    f"was healthy; last log lines:\n{proc.log_tail()}"
                )
            try:
                response = client.get(url)
                if response.status_code == 200:
                    return
                last = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            if time.monotonic() >= deadline:
                tail = f"; last log lines:\n{proc.log_tail()}" if proc is not None else ""
                name = proc.name if proc is not None else url
                raise ServerError(f"{name} not healthy after {timeout:.0f}s ({url}: {last}){tail}")
            time.sleep(0.1)
