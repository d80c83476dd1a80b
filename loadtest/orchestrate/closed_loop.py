"""A small closed-loop HTTP/1.1 client for `make bench-floor` that holds `users` keep-alive
connections to each of several servers and loads one at a time: each connection sends its next
request as soon as the previous answer is in, but only while its server's gate is open.

Why not Locust: bench-floor divides a server's CPU by the requests it served, on a 2-core machine
where the load generator shares the cores; a raw asyncio client on uvloop spends a few tens of
microseconds per request (it parses only the status line and Content-Length), so the server, not
the client, sets the pace. It reads no response body beyond its length and judges only the status.

Why gates: the machine's speed drifts by 10-20% within seconds to minutes (other tenants of its
cores come and go), so two apps loaded one after the other for seconds each are measured on
different machines. Slicing the run into short windows (`interleave`), one app at a time over
connections that stay open, with the order alternating every round, puts both apps on the same
drift.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import uvloop

Path = Callable[[], str]  # the next request's path (with its query), e.g. a random item id
# A server whose gate is closed and that uses less than this share of a core is quiet enough
# for another's window to start, even with requests still queued: `blocking` answers one
# request per delay (50 queued x 100 ms = 5 s) at about 1% of a core, and waiting for every
# such queue to empty would cost minutes per run.
QUIET_CORE_SHARE = 0.05
_STRETCH_S = 0.1  # the CPU share is judged over stretches this long


@dataclass
class Window:
    """What the client saw of one target between the two marks of a measured window."""

    started: float  # perf_counter at the mark
    ended: float = 0.0
    latencies_s: list[float] = field(default_factory=list)  # of expected answers completed in it
    statuses: Counter[str] = field(default_factory=Counter)  # every answer (or error) in it

    @property
    def seconds(self) -> float:
        return self.ended - self.started


class Target:
    """One server: each of its connections (`user`) sends only while `gate` is set; `cpu` reads
    the server's CPU seconds (bench-floor's meter; the client itself never looks at processes)."""

    def __init__(self, name: str, host: str, port: int, path: Path, cpu: Callable[[], float],
                 expect: int = 200) -> None:  # fmt: skip
        self.name, self.host, self.port, self.path, self.cpu = name, host, port, path, cpu
        self.expect = expect
        self.gate = asyncio.Event()
        self.in_flight = 0  # requests written and not yet answered (or failed)
        self.idle = asyncio.Event()  # set while in_flight is 0
        self.idle.set()
        self.window: Window | None = None

    def _record(self, status: str, start: float, end: float) -> None:
        window = self.window  # set only between the two marks of a measured window
        if window is None:
            return
        window.statuses[status] += 1
        if status == str(self.expect):
            window.latencies_s.append(end - start)

    async def user(self) -> None:
        host = f"{self.host}:{self.port}".encode()
        reader: asyncio.StreamReader | None = None
        writer: asyncio.StreamWriter | None = None
        try:
            while True:
                # Connect before waiting at the gate: opening connections is nobody's window.
                if reader is None or reader.at_eof():  # at_eof: the server closed an idle one
                    if writer is not None:
                        writer.close()
                    start = time.perf_counter()
                    try:
                        reader, writer = await asyncio.open_connection(self.host, self.port)
                    except OSError as exc:
                        reader = writer = None
                        self._record(type(exc).__name__, start, time.perf_counter())
                        await asyncio.sleep(0.1)
                        continue
                await self.gate.wait()
                if reader.at_eof():
                    continue
                assert writer is not None
                if not await self._exchange(reader, writer, host):
                    writer.close()
                    reader = writer = None
        finally:
            if writer is not None:
                writer.close()

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        host: bytes) -> bool:  # fmt: skip
        """One request and its answer; False when the connection cannot carry another."""
        start = time.perf_counter()
        self.in_flight += 1
        self.idle.clear()
        try:
            writer.write(b"GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (self.path().encode(), host))
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
            return not close
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            self._record(type(exc).__name__, start, time.perf_counter())
            return False
        finally:
            self.in_flight -= 1
            if not self.in_flight:
                self.idle.set()


@dataclass
class Slice:
    """One measured window of one target, and what the others did meanwhile."""

    target: str
    window: Window
    cpu_s: float  # the target's server CPU over the window
    others_cpu_s: float  # the other targets' servers' CPU over the same window: should be ~0
    waited_s: float  # how long the window's start waited for the previous target to go quiet
    quiet: bool  # False: the wait hit its bound, the previous target was still busy


@dataclass
class Interleaved:
    slices: list[Slice]  # in the order measured
    undrained: dict[str, int]  # target -> requests still unanswered after the final drain


async def until_quiet(target: Target, since: tuple[float, float], bound_s: float) -> bool:
    """Wait until `target` (gate closed) has answered every request, or its server uses less
    than QUIET_CORE_SHARE of a core; `since` is (perf_counter, cpu) when its gate closed.
    False when neither happened within bound_s of that."""
    t0, cpu0 = since
    deadline = t0 + bound_s
    while not target.idle.is_set():
        now = time.perf_counter()
        if now - t0 >= _STRETCH_S:
            cpu = target.cpu()
            if (cpu - cpu0) / (now - t0) < QUIET_CORE_SHARE:
                return True
            t0, cpu0 = now, cpu  # busy: judge the next stretch on its own
        if now >= deadline:
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(target.idle.wait(), min(_STRETCH_S, deadline - now))
    return True


async def _interleave(targets: Sequence[Target], users: int, rounds: int, slice_s: float,
                      settle_s: float, warmup_s: float, drain_s: float,
                      on_round: Callable[[int], None]) -> Interleaved:  # fmt: skip
    tasks = [asyncio.create_task(t.user()) for t in targets for _ in range(users)]
    slices: list[Slice] = []
    previous: Target | None = None
    closed_at = (0.0, 0.0)  # when the previous target's gate closed: perf_counter, its CPU

    async def load(target: Target, measure: bool) -> None:
        nonlocal previous, closed_at
        target.gate.set()
        await asyncio.sleep(settle_s if measure else warmup_s)
        started = time.perf_counter()
        quiet = True
        if previous is not None and previous is not target:
            quiet = await until_quiet(previous, closed_at, drain_s)
        if measure:
            waited = time.perf_counter() - started
            others = [t for t in targets if t is not target]
            # The target's CPU read right next to the marks that open and close its count (the
            # reads are synchronous: no answer is counted while one runs), the others' outside.
            others0 = sum(t.cpu() for t in others)
            cpu0 = target.cpu()
            target.window = window = Window(started=time.perf_counter())
            await asyncio.sleep(slice_s)
            cpu1 = target.cpu()
            window.ended = time.perf_counter()
            target.window = None
            others1 = sum(t.cpu() for t in others)
            slices.append(Slice(target.name, window, cpu1 - cpu0, others1 - others0,
                                waited, quiet))  # fmt: skip
        target.gate.clear()
        previous, closed_at = target, (time.perf_counter(), target.cpu())

    try:
        # Each target alone once, not counted: connections open, pools and caches warm.
        for target in targets:
            await load(target, measure=False)
        # A, B, B, A, A, B, ...: a drift of the machine favours none of them.
        for r in range(rounds):
            for target in targets if r % 2 == 0 else targets[::-1]:
                await load(target, measure=True)
            on_round(r)
        # Answers still on their way must not land in whatever the caller runs next.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(drain_s):
                for target in targets:
                    await target.idle.wait()
        undrained = {t.name: t.in_flight for t in targets if t.in_flight}
    finally:
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)
    return Interleaved(slices, undrained)


def interleave(targets: Sequence[Target], *, users: int, rounds: int, slice_s: float,
               settle_s: float, warmup_s: float, drain_s: float,
               on_round: Callable[[int], None] = lambda r: None) -> Interleaved:  # fmt: skip
    """Load `targets` one at a time over `users` open connections each: first each alone for
    warmup_s (not counted), then `rounds` rounds of one window of slice_s per target, in an
    order that alternates every round. A window starts settle_s after its target's gate opens,
    and not before the previous target is quiet (until_quiet: at most drain_s after its gate
    closed). `on_round(r)` runs after round r (progress, checking that the servers still run;
    raise to stop)."""

    async def run() -> Interleaved:
        return await _interleave(targets, users, rounds, slice_s, settle_s, warmup_s, drain_s,
                                 on_round)  # fmt: skip

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(run())
