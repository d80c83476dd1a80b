"""What compare and capacity ask the target directly (its /runtime, its /cpu), and the load
generator's CPU during a run.

The target's side of a run is not polled here: the Locust watcher (generator/server_watch.py)
polls /runtime and probes /healthz inside every run and writes PREFIX_server.csv and
PREFIX_bystander.csv (read by analysis/server_csv.py). CpuSampler is a thread sampling Locust's
process tree every `interval` seconds; it keeps every sample (results.json has them all).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import psutil

from loadtest.analysis.records import CpuSample, CpuSummary


def read_runtime(url: str, timeout: float = 5.0) -> dict[str, Any]:
    response = httpx.get(f"{url}/runtime", timeout=timeout)
    response.raise_for_status()
    data: dict[str, Any] = response.json()
    return data


def wait_idle(url: str, timeout_s: float) -> float | None:
    """Wait until the target has nothing in flight (requests of an earlier run, which the
    server finishes even after Locust hung up); seconds waited, or None if it never got idle."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        try:
            runtime = read_runtime(url, timeout=max(1.0, timeout_s / 4))
            # /runtime counts itself as in flight: the poll that reads it.
            if runtime.get("in_flight", 1) <= 1:
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


class CpuSampler(threading.Thread):
    """CPU of the Locust process and its children, in % of one core (psutil's convention)."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.samples: list[CpuSample] = []
        self._stop_event = threading.Event()
        self._t0 = time.monotonic()
        self._root = psutil.Process(pid)
        self._procs: dict[int, psutil.Process] = {}
        self._cores = psutil.cpu_count() or 1

    def run(self) -> None:
        while not self._stop_event.is_set():
            began = time.monotonic()
            point = self._poll()
            point["t"] = round(began - self._t0, 2)
            point["wall"] = round(time.time(), 2)
            self.samples.append(point)
            self._stop_event.wait(max(0.0, self.interval - (time.monotonic() - began)))

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=10)

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
