"""A small closed-loop HTTP/1.1 client for `make bench-floor`: `users` keep-alive connections,
each sending its next request as soon as the previous answer is in.

Why not Locust: bench-floor divides a server's CPU by the requests it served, on a 2-core machine
where the load generator shares the cores; a raw asyncio client on uvloop spends a few tens of
microseconds per request (it parses only the status line and Content-Length), so the server, not
the client, sets the pace. It reads no response body beyond its length and judges only the status.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import uvloop

Path = Callable[[], str]  # the next request's path (with its query), e.g. a random item id


@dataclass
class Window:
    """What the client saw between the two marks of a measured window."""

    started: float  # perf_counter at the mark
    ended: float = 0.0
    latencies_s: list[float] = field(default_factory=list)  # of expected answers completed in it
    statuses: Counter[str] = field(default_factory=Counter)  # every answer (or error) in it

    @property
    def seconds(self) -> float:
        return self.ended - self.started


class _Load:
    def __init__(self, host: str, port: int, path: Path, expect: int) -> None:
        self.host, self.port, self.path, self.expect = host, port, path, expect
        self.window: Window | None = None
        self.stopping = False

    def _record(self, status: str, start: float, end: float) -> None:
        window = self.window
        if window is None or end < window.started or (window.ended and end > window.ended):
            return
        window.statuses[status] += 1
        if status == str(self.expect):
            window.latencies_s.append(end - start)

    async def user(self) -> None:
        host = f"{self.host}:{self.port}".encode()
        while not self.stopping:
            start = time.perf_counter()
            try:
                reader, writer = await asyncio.open_connection(self.host, self.port)
            except OSError as exc:
                self._record(type(exc).__name__, start, time.perf_counter())
                await asyncio.sleep(0.1)
                continue
            try:
                while not self.stopping:
                    start = time.perf_counter()
                    request = b"GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (self.path().encode(), host)
                    writer.write(request)
                    head = await reader.readuntil(b"\r\n\r\n")
                    length, close = 0, False
                    for line in head.split(b"\r\n")[1:]:
                        name, _, value = line.partition(b":")
                        name = name.strip().lower()
                        if name == b"content-length":
                            length = int(value)
                        elif name == b"connection" and value.strip().lower() == b"close":
                            close = True
                    await reader.readexactly(length)
                    self._record(head[9:12].decode(), start, time.perf_counter())
                    if close:
                        break
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
                self._record(type(exc).__name__, start, time.perf_counter())
            finally:
                writer.close()


async def _run(
    load: _Load,
    users: int,
    warmup_s: float,
    duration_s: float,
    at_start: Callable[[], None],
    at_end: Callable[[], None],
    drain_s: float,
) -> Window:
    tasks = [asyncio.create_task(load.user()) for _ in range(users)]
    try:
        await asyncio.sleep(warmup_s)
        at_start()
        load.window = Window(started=time.perf_counter())
        await asyncio.sleep(duration_s)
        at_end()
        load.window.ended = time.perf_counter()
        load.stopping = True
        # Let the requests in flight finish (the server must not be left with a queue that
        # would count in the next run's CPU), then cut whatever is still waiting.
        await asyncio.wait(tasks, timeout=drain_s)
    finally:
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)
    return load.window


def run(
    host: str,
    port: int,
    path: Path,
    *,
    users: int,
    warmup_s: float,
    duration_s: float,
    at_start: Callable[[], None] = lambda: None,
    at_end: Callable[[], None] = lambda: None,
    expect: int = 200,
    drain_s: float = 10.0,
) -> Window:
    """Load host:port with `users` connections for warmup_s + duration_s; `at_start` and
    `at_end` run at the marks of the measured window (e.g. reading the server's CPU time)."""
    load = _Load(host, port, path, expect)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(_run(load, users, warmup_s, duration_s, at_start, at_end, drain_s))
