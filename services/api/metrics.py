"""Live numbers: request latency, in-flight requests, event-loop lag, threadpool, pools, executor.

Prometheus metrics are process-wide. Under gunicorn every worker is its own process, so
gunicorn.conf.py sets PROMETHEUS_MULTIPROC_DIR: each worker then writes its samples to files there
and /metrics (whichever worker answers) merges them: histograms and counters add up, gauges use
the multiprocess_mode given below ("livesum": summed over live workers, "livemax": the worst).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from bisect import bisect_left
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio.to_thread
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .process import ProcessSampler

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1, 2, 3, 5, 10, 20, 30, 60)
_UPPER_BOUNDS = (*LATENCY_BUCKETS, math.inf)  # the histogram's buckets, +Inf last as it adds it

REQUEST_SECONDS = Histogram(
    "lab_http_request_duration_seconds", "Request latency", ["route", "method", "status"],
    buckets=LATENCY_BUCKETS,
)  # fmt: skip
IN_FLIGHT = Gauge(
    "lab_http_requests_in_flight", "Requests being served", multiprocess_mode="livesum"
)
LOOP_LAG = Gauge(
    "lab_event_loop_lag_seconds", "Lateness of the last loop-lag probe", multiprocess_mode="livemax"
)
LOOP_LAG_SAMPLES = Histogram(
    "lab_event_loop_lag_probe_seconds", "Lateness of every loop-lag probe", buckets=LATENCY_BUCKETS
)
THREADS_BORROWED = Gauge(
    "lab_threadpool_tokens_borrowed", "AnyIO thread limiter tokens in use",
    multiprocess_mode="livesum",
)  # fmt: skip
THREADS_TOTAL = Gauge(
    "lab_threadpool_tokens_total", "AnyIO thread limiter size", multiprocess_mode="livesum"
)
DB_POOL = Gauge(
    "lab_db_pool_connections", "Database pool: size, in_use, waiting, max", ["state"],
    multiprocess_mode="livesum",
)  # fmt: skip
PROCESS_CPU = Gauge(
    "lab_process_cpu_percent", "CPU of the API process over the last second, % of one core",
    ["process"], multiprocess_mode="livesum",
)  # fmt: skip
PROCESS_RSS = Gauge(
    "lab_process_resident_bytes", "Resident memory", ["process"], multiprocess_mode="livesum"
)
PROCESS_THREADS = Gauge("lab_process_threads", "OS threads", multiprocess_mode="livesum")
EXECUTOR_QUEUE = Gauge(
    "lab_cpu_executor_queue_depth", "CPU jobs waiting for an executor worker",
    multiprocess_mode="livesum",
)  # fmt: skip

log = logging.getLogger("lab.api")
LAG_WINDOW_S = 10.0  # /runtime reports the worst lag over this window: a trainer reads it late
# The gauges (process, threadpool, pools) are refreshed this often by the lag probe, and on every
# /metrics: not on each probe tick (20 a second), whose own work must stay tiny, since it is paid
# per second, however few requests a blocked variant serves in it.
GAUGES_EVERY_S = 0.5


@dataclass(slots=True)
class PendingLatency:
    """One latency series' observations since the last flush: a count per bucket, the sum."""

    child: Any  # the Histogram child, its labels resolved once
    counts: list[int] = field(default_factory=lambda: [0] * len(_UPPER_BOUNDS))
    total: float = 0.0

    def flush(self) -> None:
        # prometheus_client's Histogram.observe() does this per observation, under a lock per
        # value; here once per interval (prometheus_client 0.26: _buckets and _sum, one value
        # per bucket; tests/test_behaviour.py checks the exported counts)
        for i, n in enumerate(self.counts):
            if n:
                self.child._buckets[i].inc(n)
                self.counts[i] = 0
        if self.total:
            self.child._sum.inc(self.total)
            self.total = 0.0


@dataclass
class Live:
    """The same numbers for /runtime, read directly (prometheus gauges are write-only here)."""

    in_flight: int = 0
    lag_s: float = 0.0
    probe_due: float = 0.0  # loop.time() at which the lag probe should wake next
    lag_samples: deque[tuple[float, float]] = field(default_factory=deque)
    started: float = field(default_factory=time.time)
    process: ProcessSampler = field(default_factory=ProcessSampler)
    # (route, method, status) -> latencies not yet in the histogram (refresh_gauges adds them)
    latency: dict[tuple[str, str, int], PendingLatency] = field(default_factory=dict)

    def record_lag(self, lag: float) -> None:
        now = time.monotonic()
        self.lag_s = lag
        self.lag_samples.append((now, lag))
        while self.lag_samples and self.lag_samples[0][0] < now - LAG_WINDOW_S:
            self.lag_samples.popleft()

    def lag_max_s(self) -> float:
        return max((lag for _, lag in self.lag_samples), default=0.0)

    def lag_now_s(self, loop_time: float) -> float:
        """The last probe's lateness, or how overdue the probe is now if that is more: a loop
        busy with a queue of blocking requests may answer /runtime before the probe's turn."""
        return max(self.lag_s, loop_time - self.probe_due)


class MetricsMiddleware:
    """Pure ASGI (BaseHTTPMiddleware would add a task per request and distort what we measure).

    Per request: two integer updates and a bucket count. The histogram itself is updated per
    interval, with the other gauges (lag probe, and on each /metrics): prometheus_client's
    observe() takes a lock per value, on every request."""

    def __init__(self, app: ASGIApp, live: Live) -> None:
        self.app, self.live = app, live

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        start = time.perf_counter()
        live = self.live
        live.in_flight += 1
        try:
            await self.app(scope, receive, send_status)
        finally:
            live.in_flight -= 1
            elapsed = time.perf_counter() - start
            # The route template, not the raw path: /items/1 and /items/2 are one series.
            key = (getattr(scope.get("route"), "path", "unmatched"), scope["method"], status)
            pending = live.latency.get(key)
            if pending is None:
                child = REQUEST_SECONDS.labels(key[0], key[1], str(status))
                pending = live.latency[key] = PendingLatency(child)
            pending.counts[bisect_left(_UPPER_BOUNDS, elapsed)] += 1
            pending.total += elapsed


def threadpool_stats() -> dict[str, int]:
    limiter = anyio.to_thread.current_default_thread_limiter()  # needs the running loop
    return {"borrowed": int(limiter.borrowed_tokens), "total": int(limiter.total_tokens)}


def refresh_gauges(live: Live, pools: dict[str, Any]) -> None:
    for pending in live.latency.values():
        pending.flush()
    IN_FLIGHT.set(live.in_flight)
    usage = live.process.usage()
    PROCESS_CPU.labels("api").set(usage.cpu_pct)
    PROCESS_CPU.labels("children").set(usage.children_cpu_pct)
    PROCESS_RSS.labels("api").set(usage.rss_bytes)
    PROCESS_RSS.labels("children").set(usage.children_rss_bytes)
    PROCESS_THREADS.set(usage.threads)
    threads = threadpool_stats()
    THREADS_BORROWED.set(threads["borrowed"])
    THREADS_TOTAL.set(threads["total"])
    for state, value in pools.get("db_pool", {}).items():
        DB_POOL.labels(state).set(value)
    if executor := pools.get("executor"):
        EXECUTOR_QUEUE.set(executor["queued"])


@contextlib.asynccontextmanager
async def lag_probe(
    live: Live, interval: float, extra: Callable[[], dict[str, Any]]
) -> AsyncIterator[None]:
    """Sleep `interval` again and again; how late each wake-up is = how long the loop was blocked.

    Every GAUGES_EVERY_S a wake-up also refreshes the gauges, so every gunicorn worker keeps its
    own numbers fresh."""

    async def run() -> None:
        loop = asyncio.get_running_loop()
        gauges_due = 0.0
        while True:
            before = loop.time()
            live.probe_due = before + interval
            await asyncio.sleep(interval)
            lag = max(0.0, loop.time() - before - interval)
            live.record_lag(lag)
            LOOP_LAG.set(lag)
            LOOP_LAG_SAMPLES.observe(lag)
            if loop.time() < gauges_due:
                continue
            gauges_due = loop.time() + GAUGES_EVERY_S
            try:
                refresh_gauges(live, extra())
            except Exception:  # a metrics bug must not stop the lag probe (it would look frozen)
                log.exception("refreshing gauges failed")

    task = asyncio.create_task(run(), name="loop-lag-probe")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def prometheus_text(multiprocess: bool) -> tuple[bytes, str]:
    """Under gunicorn (multiprocess), every worker's samples merged; else this process's."""
    if multiprocess:
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
