"""Checks that TCP ports are free before servers try (and fail late) to bind them."""

import errno
import socket
from collections.abc import Mapping


class PortBusyError(RuntimeError):
    """A port the lab needs is already taken by some other process."""


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
