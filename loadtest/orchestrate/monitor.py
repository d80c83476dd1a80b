"""Watch what happens around a load run: the target's /runtime and the load generator's CPU.

Both samplers are threads polling every `interval` seconds; they keep every sample (for the
results) and the peaks (for the report).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar, cast

import httpx
import psutil

from loadtest.analysis.records import CpuSample, CpuSummary, ServerPeaks, ServerSample

# /runtime counts itself as in flight: the poll that reads it.
_OWN_REQUEST = 1
# Peaks kept from /runtime, as (report key, path in the JSON).
RUNTIME_FIELDS: dict[str, tuple[str, ...]] = {
    "loop_lag_ms": ("loop_lag_ms",),
    "loop_lag_max_ms": ("loop_lag_max_ms",),
    "threadpool_borrowed": ("threadpool", "borrowed"),
    "db_pool_waiting": ("db_pool", "waiting"),
    "in_flight": ("in_flight",),
}


def read_runtime(url: str, timeout: float = 5.0) -> dict[str, Any]:
    response = httpx.get(f"{url}/runtime", timeout=timeout)
    response.raise_for_status()
    data: dict[str, Any] = response.json()
    return data


def runtime_point(data: dict[str, Any]) -> ServerSample:
    """The fields kept from one /runtime answer (in_flight without the poll itself)."""
    point: dict[str, float] = {}
    for key, path in RUNTIME_FIELDS.items():
        value: Any = data
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, int | float):
            point[key] = float(value)
    if "in_flight" in point:
        point["in_flight"] = max(0.0, point["in_flight"] - _OWN_REQUEST)
    return cast(ServerSample, point)  # keys: RUNTIME_FIELDS, all ServerSample fields


def wait_idle(url: str, timeout_s: float) -> float | None:
    """Wait until the target has nothing in flight (requests of an earlier run, which the
    server finishes even after Locust hung up); seconds waited, or None if it never got idle."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        try:
            point = runtime_point(read_runtime(url, timeout=max(1.0, timeout_s / 4)))
            if point.get("in_flight", 0.0) == 0:
                return time.monotonic() - start
        except httpx.HTTPError:
            pass  # a busy blocking variant answers late: keep asking until the deadline
        time.sleep(0.5)
    return None


def cpu_unit_s(url: str, kind: str, work: int = 20, tries: int = 5) -> float | None:
    """Seconds one work unit of `kind` takes on the target (its /cpu reports elapsed_ms), the
    best of a few unloaded calls; None if the target does not answer."""
    best: float | None = None
    for _ in range(tries):
        try:
            response = httpx.get(f"{url}/cpu", params={"work": work, "kind": kind}, timeout=10)
            response.raise_for_status()
        except httpx.HTTPError:
            return None
        unit = response.json()["elapsed_ms"] / 1000 / work
        best = unit if best is None else min(best, unit)
    return best


SampleT = TypeVar("SampleT", ServerSample, CpuSample)


class _Poller(threading.Thread, Generic[SampleT]):
    def __init__(self, interval: float, sample: Callable[[], SampleT]) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self._sample: Callable[[], SampleT] = sample
        self.samples: list[SampleT] = []
        self._stop_event = threading.Event()
        self._t0 = time.monotonic()

    def run(self) -> None:
        while not self._stop_event.is_set():
            began = time.monotonic()
            point = self._sample()
            point["t"] = round(began - self._t0, 2)
            point["wall"] = round(time.time(), 2)
            self.samples.append(point)
            self._stop_event.wait(max(0.0, self.interval - (time.monotonic() - began)))

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=10)


class RuntimeSampler(_Poller[ServerSample]):
    """GET /runtime every `interval` s; one poll at a time, so a blocked loop is not flooded."""

    def __init__(self, url: str, interval: float = 0.5) -> None:
        self.url = url
        self.lag_window_s = 10.0  # the server's window for loop_lag_max_ms (from /runtime)
        self._client = httpx.Client(timeout=max(2.0, 4 * interval))
        super().__init__(interval, self._poll)

    def _poll(self) -> ServerSample:
        try:
            response = self._client.get(f"{self.url}/runtime")
            response.raise_for_status()
            data = response.json()
            self.lag_window_s = float(data.get("loop_lag_window_s", self.lag_window_s))
            return {"ok": True, **runtime_point(data)}
        except (httpx.HTTPError, ValueError):
            return {"ok": False}

    def stop(self) -> None:
        super().stop()
        self._client.close()

    def peaks(self, since_wall: float | None = None) -> ServerPeaks:
        """Peaks of the samples taken at `since_wall` (epoch s) or later: the measured window."""
        window = [s for s in self.samples if since_wall is None or s["wall"] >= since_wall]
        ok: list[dict[str, Any]] = [dict(s) for s in window if s.get("ok")]

        def peak(key: str, since_t: float = 0.0) -> float | None:
            return max((s[key] for s in ok if key in s and s["t"] >= since_t), default=None)

        # loop_lag_max_ms is the worst lag of the server's last window (10 s): until a window
        # has passed it may still show the previous run's lag, so only later samples count.
        lag, lag_max = peak("loop_lag_ms"), peak("loop_lag_max_ms", since_t=self.lag_window_s)
        return ServerPeaks(
            loop_lag_ms=lag,
            loop_lag_max_ms=lag_max,
            threadpool_borrowed=peak("threadpool_borrowed"),
            db_pool_waiting=peak("db_pool_waiting"),
            in_flight=peak("in_flight"),
            loop_lag_peak_ms=max((v for v in (lag, lag_max) if v is not None), default=None),
            polls_sent=len(window),
            polls_answered=len(ok),
        )


class CpuSampler(_Poller[CpuSample]):
    """CPU of the Locust process and its children, in % of one core (psutil's convention)."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        self._root = psutil.Process(pid)
        self._procs: dict[int, psutil.Process] = {}
        self._cores = psutil.cpu_count() or 1
        super().__init__(interval, self._poll)

    def _poll(self) -> CpuSample:
        per_proc: list[float] = []
        try:
            procs = [self._root, *self._root.children(recursive=True)]
        except psutil.Error:
            procs = []
        for proc in procs:
            known = self._procs.setdefault(proc.pid, proc)
            try:
                per_proc.append(known.cpu_percent(interval=None))
            except psutil.Error:
                continue
        total = sum(per_proc)
        return CpuSample(
            total_pct=round(total, 1),
            busiest_pct=round(max(per_proc, default=0.0), 1),
            machine_pct=round(total / self._cores, 1),
            processes=len(per_proc),
            t=0.0,  # set by the poller, like wall
            wall=0.0,
        )

    def during(self, start: float | None, end: float | None) -> list[CpuSample]:
        """Samples taken while requests ran. Locust's start-up (imports, about a second at 100%
        of a core: the first cpu_samples of any results.json) is not load generation; psutil's
        first reading of a process is 0.0 anyway."""
        if start is None or end is None:
            return []
        # a sample covers the interval before it: it must end after the first request
        return [s for s in self.samples[1:] if start + self.interval <= s["wall"] <= end + 1]

    @staticmethod
    def summary(rest: list[CpuSample]) -> CpuSummary:
        if not rest:
            return {"peak_pct_one_core": None, "mean_pct_one_core": None, "peak_pct_machine": None}
        return {
            "peak_pct_one_core": max(s["busiest_pct"] for s in rest),
            "mean_pct_one_core": round(sum(s["busiest_pct"] for s in rest) / len(rest), 1),
            "peak_pct_total": max(s["total_pct"] for s in rest),
            "peak_pct_machine": max(s["machine_pct"] for s in rest),
            "processes": max(s["processes"] for s in rest),
        }
