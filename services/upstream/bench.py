"""Benchmark of the mock upstream's timing accuracy under many requests in flight.

Starts `python -m services.upstream` as a subprocess (pinned to one CPU when possible), drives
an open-loop load at a fixed rate with a fixed delay_ms, and reports the distribution of
(observed latency - delay the server says it applied, header x-mock-delay-ms).

The load generator is a raw asyncio Protocol client on uvloop, not httpx: every request is
one pre-built `GET` written on an idle keep-alive connection taken from a pool opened before
the measurement, and only the status line, the headers and content-length are parsed. Send
and receive are timestamped right at the socket (just before transport.write, first thing in
data_received), and the client's own scheduling lag is reported next to the result.

Runs natively (`make bench-upstream`): it starts the server with services.lab's process
helpers, which the upstream image does not ship.
"""

import argparse
import asyncio
import contextlib
import gc
import json
import math
import os
import platform
import resource
import shlex
import statistics
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import cast

import psutil
import uvloop

from services.lab.netcheck import free_port
from services.lab.procs import ServerProcess
from services.lab.sysinfo import cpu_model, cpu_pressure_s

perf = time.perf_counter


@dataclass
class Phase:
    """Counters and samples of one load phase."""

    overheads_ms: list[float] = field(default_factory=list)  # observed - configured delay
    sent_at: list[float] = field(default_factory=list)  # send time of each overheads_ms entry
    send_lag_ms: list[float] = field(default_factory=list)  # actual send - scheduled send
    tick_lag_ms: list[float] = field(default_factory=list)  # oversleep of the 1 ms ticker
    inflight_samples: list[int] = field(default_factory=list)
    inflight: int = 0
    inflight_max: int = 0
    sent: int = 0
    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    pool_empty: int = 0  # ticks on which a due request found no idle connection
    server_in_flight: int = -1  # the server's own count (GET /stats) when sending ended
    first_send: float = 0.0
    last_send: float = 0.0
    drained: asyncio.Event | None = None  # set once sending is over, fires at 0 in flight

    def answered(self) -> None:
        self.inflight -= 1
        if self.inflight == 0 and self.drained is not None:
            self.drained.set()

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


class Conn(asyncio.Protocol):
    """One keep-alive connection carrying at most one request at a time."""

    def __init__(self, pool: deque["Conn"]) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.phase: Phase | None = None  # set while a request is outstanding
        self.buf = bytearray()
        self.need = -1  # total bytes of the current response, once the headers are parsed
        self.status = 0
        self.delay_ms = math.nan
        self.t_send = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def send(self, phase: Phase, request: bytes) -> float:
        self.phase = phase
        self.t_send = t = perf()
        assert self.transport is not None  # only idle, open connections are handed out
        self.transport.write(request)
        return t

    def data_received(self, data: bytes) -> None:
        t = perf()  # first thing: the receive timestamp must not include our parsing
        buf = self.buf
        buf += data
        if self.need < 0:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = bytes(buf[:end]).split(b"\r\n")
            self.status = int(lines[0][9:12])
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name = name.lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"x-mock-delay-ms":
                    self.delay_ms = float(value)
            self.need = end + 4 + length
        if len(buf) < self.need:
            return
        phase = self.phase
        if phase is not None:
            phase.answered()
            if self.status == 200 and not math.isnan(self.delay_ms):
                phase.ok += 1
                phase.overheads_ms.append((t - self.t_send) * 1000 - self.delay_ms)
                phase.sent_at.append(self.t_send)
            else:
                phase.error(f"HTTP {self.status}")
        del buf[:]
        self.need, self.delay_ms, self.phase = -1, math.nan, None
        self.pool.append(self)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.phase is not None:
            self.phase.answered()
            self.phase.error("connection lost")
            self.phase = None
        elif self in self.pool:
            self.pool.remove(self)  # an idle connection the server closed
        self.transport = None


async def open_pool(host: str, port: int, size: int) -> tuple[deque[Conn], list[Conn]]:
    """Return (idle connections, all connections)."""
    loop = asyncio.get_running_loop()
    pool: deque[Conn] = deque()
    batch = 200  # a few hundred concurrent connects at a time stay within the listen backlog
    for start in range(0, size, batch):
        n = min(batch, size - start)
        made = await asyncio.gather(
            *(loop.create_connection(lambda: Conn(pool), host, port) for _ in range(n))
        )
        pool.extend(protocol for _, protocol in made)
    return pool, list(pool)


async def server_in_flight(host: str, port: int) -> int:
    """Ask the server how many delayed requests it holds (-1 if that fails)."""
    try:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(f"GET /stats HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        return int(json.loads(data.split(b"\r\n\r\n", 1)[1])["in_flight"])
    except (OSError, TimeoutError, ValueError, KeyError, IndexError):
        return -1


async def run_phase(
    host: str,
    port: int,
    rate: float,
    delay_ms: int,
    duration: float,
    path: str,
    connections: int,
    drain_s: float,
) -> tuple[Phase, float, float]:
    """Open the pool, send rate*duration requests on schedule, wait for the answers."""
    t0 = perf()
    pool, conns = await asyncio.wait_for(open_pool(host, port, connections), 60)
    print(f"  opened {len(pool)} connections in {perf() - t0:.2f} s", flush=True)
    sep = "&" if "?" in path else "?"
    request = f"GET {path}{sep}delay_ms={delay_ms} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n"
    request_bytes = request.encode()
    phase = Phase()
    total = round(rate * duration)
    steady_from = delay_ms / 1000  # in-flight is only flat once the first answers come back
    start = perf()
    phase.first_send = start
    wake = start
    while phase.sent < total:
        now = perf()
        phase.tick_lag_ms.append((now - wake) * 1000)
        due = min(total, int((now - start) * rate) + 1)
        while phase.sent < due:
            if not pool:
                phase.pool_empty += 1
                break
            t = pool.popleft().send(phase, request_bytes)
            phase.send_lag_ms.append((t - (start + phase.sent / rate)) * 1000)
            phase.sent += 1
            phase.inflight += 1
        phase.last_send = perf()
        phase.inflight_max = max(phase.inflight_max, phase.inflight)
        if now - start >= steady_from:
            phase.inflight_samples.append(phase.inflight)
        wake = perf() + 0.001
        await asyncio.sleep(0.001)
    phase.server_in_flight = await server_in_flight(host, port)
    if phase.inflight > 0:
        phase.drained = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(phase.drained.wait(), delay_ms / 1000 + drain_s)
    if phase.inflight > 0:
        phase.errors["no answer before drain timeout"] = phase.inflight
    pool.clear()
    for conn in conns:
        conn.phase = None
        if conn.transport is not None:
            conn.transport.close()
    return phase, start, perf()


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of an already sorted list."""
    if not values:
        return math.nan
    return values[min(len(values) - 1, max(0, math.ceil(q / 100 * len(values)) - 1))]


def summary(values: list[float]) -> str:
    v = sorted(values)
    return (
        f"p50 {pct(v, 50):.2f}  p90 {pct(v, 90):.2f}  p99 {pct(v, 99):.2f}  max {pct(v, 100):.2f}"
    )


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process, or NaN if it is gone."""
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return math.nan
    return times.user + times.system


def machine_busy_s() -> float:
    """CPU seconds all CPUs spent busy (neither idle nor waiting for I/O) since boot."""
    t = psutil.cpu_times()
    # Named by field: which ones exist depends on the platform (irq, softirq, steal: Linux).
    busy = ("user", "nice", "system", "irq", "softirq", "steal")
    return sum(float(getattr(t, name, 0.0)) for name in busy)


def cpu_snapshot(server_pid: int) -> dict[str, float]:
    return {
        "server": proc_cpu_s(server_pid),
        "client": time.process_time(),
        "machine": machine_busy_s(),
        "pressure": cpu_pressure_s(),
    }


def raise_nofile(needed: int) -> int:
    """Raise the soft open-files limit towards `needed`; return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        soft = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return soft


def report(
    title: str, phase: Phase, start: float, end: float, rate: float, cpu: dict[str, float]
) -> tuple[float, float]:
    """Print one phase; return (achieved rate, p99 overhead)."""
    send_window = max(phase.last_send - phase.first_send, 1e-9)
    # Answers that came back OK per second of sending: drops with errors and with client lag.
    achieved = phase.ok / send_window if phase.sent > 1 else 0.0
    ovh = sorted(phase.overheads_ms)
    steady = phase.inflight_samples
    mean_inflight = statistics.fmean(steady) if steady else math.nan
    errors = sum(phase.errors.values())
    print(f"== {title}")
    print(
        f"  target rate {rate:.0f} req/s, achieved {achieved:.1f} req/s "
        f"({achieved / rate:.1%}; sent {phase.sent}, ok {phase.ok}, errors {errors}"
        f"{' ' + str(phase.errors) if errors else ''}) over {send_window:.2f} s of sending"
    )
    print(
        f"  in flight: max {phase.inflight_max}, mean {mean_inflight:.0f} "
        f"(client side, steady state after the first delay); server-side at end of sending "
        f"{phase.server_in_flight}"
    )
    print(f"  overhead = observed - configured delay (ms): {summary(ovh)}  (n={len(ovh)})")
    print(
        f"  client lag (ms): send vs schedule {summary(phase.send_lag_ms)}; "
        f"1 ms ticker oversleep p99 {pct(sorted(phase.tick_lag_ms), 99):.2f} "
        f"max {max(phase.tick_lag_ms, default=math.nan):.2f}; pool empty {phase.pool_empty}x"
    )
    wall = end - start
    # System-wide and per-process CPU counters tick at different moments: clamp small negatives.
    others = max(0.0, cpu["machine"] - cpu["server"] - cpu["client"]) / wall
    print(
        f"  CPU over {wall:.1f} s, in % of one core: server {cpu['server'] / wall:.0%}, "
        f"load generator {cpu['client'] / wall:.0%}, other processes {others:.0%}; "
        f"CPU pressure (some task waiting for a CPU) {cpu['pressure'] / wall:.0%} of the time"
    )
    if others > 0.1:
        print("  note: other processes competed for the CPUs; the tail reflects that contention")
    return achieved, pct(ovh, 99)


def write_samples(path: str, phase: Phase, start: float) -> None:
    with open(path, "w") as f:
        f.write("sent_s,overhead_ms\n")
        for t, ovh in zip(phase.sent_at, phase.overheads_ms, strict=True):
            f.write(f"{t - start:.6f},{ovh:.3f}\n")


async def bench(args: argparse.Namespace, server_pid: int, port: int) -> bool:
    host = args.host
    phases = []
    if args.sanity_duration > 0:
        conns = math.ceil(args.sanity_rate * (args.sanity_delay_ms / 1000 + 0.5)) + 10
        phases.append(
            (
                "sanity (low concurrency)",
                args.sanity_rate,
                args.sanity_delay_ms,
                args.sanity_duration,
                conns,
                False,
            )
        )
    conns = pool_size(args)
    phases.append(("main", args.rate, args.delay_ms, args.duration, conns, True))

    passed = True
    for title, rate, delay_ms, duration, conns, judged in phases:
        print(
            f"-- {title}: {rate:g} req/s, delay_ms={delay_ms}, {duration:g} s, {conns} connections",
            flush=True,
        )
        gc.collect()
        gc.freeze()  # keep the client's own GC pauses out of the timestamps
        gc.disable()
        cpu0 = cpu_snapshot(server_pid)
        phase, start, end = await run_phase(
            host, port, rate, delay_ms, duration, args.path, conns, args.drain_timeout
        )
        cpu = {k: v - cpu0[k] for k, v in cpu_snapshot(server_pid).items()}
        gc.enable()
        achieved, p99 = report(f"{title} result", phase, start, end, rate, cpu)
        if judged and args.samples_csv:
            write_samples(args.samples_csv, phase, start)
            print(f"  samples written to {args.samples_csv}")
        if judged:
            checks = [
                (p99 <= args.max_p99_ms, f"p99 overhead {p99:.2f} ms <= {args.max_p99_ms} ms"),
                (
                    achieved >= args.min_rate_ratio * rate,
                    f"achieved rate {achieved:.1f} >= {args.min_rate_ratio:.0%} of {rate:g}",
                ),
                (
                    phase.inflight_max >= args.min_inflight,
                    f"in-flight max {phase.inflight_max} >= {args.min_inflight}",
                ),
            ]
            for ok, text in checks:
                print(f"  [{'PASS' if ok else 'FAIL'}] {text}")
                passed = passed and ok
        await asyncio.sleep(0.5)  # let the server close the finished pool
    return passed


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m services.upstream.bench",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--rate", type=float, default=2000, help="target requests per second")
    p.add_argument(
        "--delay-ms",
        type=int,
        default=3000,
        help="delay_ms of every request (in flight ~ rate x delay)",
    )
    p.add_argument("--duration", type=float, default=15, help="seconds of sending")
    p.add_argument(
        "--connections",
        type=int,
        default=0,
        help="keep-alive pool size (0: rate x (delay + 0.5 s) + 100)",
    )
    p.add_argument(
        "--drain-timeout",
        type=float,
        default=10,
        help="seconds beyond the delay to wait for the last answers",
    )
    p.add_argument("--path", default="/todos/1", help="path requested")
    p.add_argument("--host", default="127.0.0.1", help="address the upstream binds")
    p.add_argument("--sanity-rate", type=float, default=200)
    p.add_argument("--sanity-delay-ms", type=int, default=100)
    p.add_argument("--sanity-duration", type=float, default=3, help="0 skips the sanity run")
    p.add_argument("--max-p99-ms", type=float, default=5.0, help="fail above this p99 overhead")
    p.add_argument(
        "--min-rate-ratio",
        type=float,
        default=0.95,
        help="fail below this fraction of the target rate",
    )
    p.add_argument(
        "--min-inflight", type=int, default=5000, help="fail if in-flight never reaches this"
    )
    p.add_argument("--samples-csv", help="write (send time, overhead) of the main run here")
    p.add_argument("--no-pin", action="store_true", help="do not pin server and client to CPUs")
    return p.parse_args(argv)


def pool_size(args: argparse.Namespace) -> int:
    """Connections for the main run: enough for rate x (delay + 0.5 s) requests in flight."""
    return int(args.connections or math.ceil(args.rate * (args.delay_ms / 1000 + 0.5)) + 100)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = shlex.join([sys.executable, "-m", "services.upstream.bench", *sys.argv[1:]])
    conns = pool_size(args)
    nofile = raise_nofile(conns + 1000)  # before spawning: the server inherits it
    if nofile < conns + 100:
        print(f"open-files limit {nofile} is too low for {conns} connections", file=sys.stderr)
        return 2
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    pin = not args.no_pin and len(cpus) >= 2 and hasattr(os, "sched_setaffinity")

    port = free_port(args.host)
    server = ServerProcess(
        name="upstream",
        cmd=[sys.executable, "-m", "services.upstream"],
        env={"MOCK_HOST": args.host, "MOCK_PORT": str(port)},
        health_url=f"http://{args.host}:{port}/healthz",
        # The shell's MOCK_* would change what is measured: the server runs on its defaults.
        unset_prefixes=("MOCK_",),
    )
    print(f"command: {command}")
    print(
        f"machine: {os.cpu_count()} CPUs ({cpu_model()}), {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}, uvloop {version('uvloop')}, "
        f"uvicorn {version('uvicorn')}; RLIMIT_NOFILE {nofile}"
    )
    server.start()
    try:
        if pin:
            os.sched_setaffinity(server.pid, {cpus[0]})
            os.sched_setaffinity(0, {cpus[1]})
            where = f"server pinned to CPU {cpus[0]}, load generator pinned to CPU {cpus[1]}"
        else:
            where = "no CPU pinning (" + ("--no-pin" if args.no_pin else "needs 2 CPUs") + ")"
        print(f"server: MOCK_HOST={args.host} MOCK_PORT={port} {shlex.join(server.cmd)}")
        print(f"pinning: {where}", flush=True)
        server.wait_healthy(15)
        passed = uvloop.run(bench(args, server.pid, port))
    except (OSError, RuntimeError, TimeoutError) as exc:
        print(f"benchmark failed: {exc!r}", file=sys.stderr)
        passed = False
    finally:
        server.stop(timeout=10)
    print(f"RESULT: {'PASS' if passed else 'FAIL'}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
