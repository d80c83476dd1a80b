"""This process's share of the machine: the CPUs it may use, and what it uses of them.

CPU % is "% of one core", as top shows it: 100 means one core busy all the time, which is all an
event loop (or a GIL-bound threadpool) can use. Children are the offload variant's CPU workers.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import psutil

WINDOW_S = 1.0  # CPU % is measured over about the last second
MIN_INTERVAL_S = 0.25  # sampled at most this often (/proc reads; cheap, but not per request)
# Finding the children means reading every process of the machine (psutil's ppid map, ~1.3 ms
# with 150 processes): done only when asked for, and at most this often.
CHILDREN_EVERY_S = 1.0


def available_cpus() -> float:
    """CPUs this process may use: its affinity, capped by a cgroup v2 quota (a container's
    `cpus:` limit), so a load generator elsewhere can compute this server's ceilings."""
    cpus = float(len(os.sched_getaffinity(0)))
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cpus = min(cpus, int(quota) / int(period))
    except (OSError, ValueError):
        pass
    return cpus


@dataclass(frozen=True)
class Usage:
    cpu_pct: float  # this process, % of one core over the last ~second
    children_cpu_pct: float  # its child processes together (offload's CPU workers)
    rss_bytes: int
    children_rss_bytes: int
    threads: int
    children: int

    def as_dict(self) -> dict[str, float | int]:
        return {
            "cpu_pct": round(self.cpu_pct, 1),
            "children_cpu_pct": round(self.children_cpu_pct, 1),
            "rss_mb": round(self.rss_bytes / 2**20, 1),
            "children_rss_mb": round(self.children_rss_bytes / 2**20, 1),
            "threads": self.threads,
            "children": self.children,
        }


class ProcessSampler:
    """Samples CPU time, memory and threads (a few /proc reads) for /runtime and /metrics."""

    def __init__(self, children: bool = True) -> None:
        """`children`: also sample child processes (offload's CPU workers); off for variants
        that start none, since finding them costs far more than the rest of a sample."""
        self.proc = psutil.Process()
        self.track_children = children
        self._children: list[psutil.Process] = []
        self._children_due = 0.0
        # (monotonic time, own CPU seconds, children's CPU seconds keyed by pid)
        self._samples: deque[tuple[float, float, dict[int, float]]] = deque()
        self._usage = Usage(0.0, 0.0, 0, 0, 0, 0)
        self.sample()  # the baseline: the first request may block the loop before a probe tick

    def sample(self) -> None:
        now = time.monotonic()
        if self._samples and now - self._samples[-1][0] < MIN_INTERVAL_S:
            return
        with self.proc.oneshot():
            own = self.proc.cpu_times()
            rss, threads = self.proc.memory_info().rss, self.proc.num_threads()
        children: dict[int, float] = {}
        children_rss = 0
        # Until some are found (the pool starts after this sampler), then every CHILDREN_EVERY_S.
        if self.track_children and (now >= self._children_due or not self._children):
            self._children_due = now + CHILDREN_EVERY_S
            with contextlib.suppress(psutil.Error):
                self._children = self.proc.children(recursive=True)
        for child in self._children:
            try:
                with child.oneshot():
                    t = child.cpu_times()
                    children[child.pid] = t.user + t.system
                    children_rss += child.memory_info().rss
            except psutil.Error:  # gone between listing and reading
                continue
        self._samples.append((now, own.user + own.system, children))
        while len(self._samples) > 2 and self._samples[1][0] <= now - WINDOW_S:
            self._samples.popleft()
        first = self._samples[0]
        span = now - first[0]
        cpu = 0.0
        if span > 0:
            cpu = 100 * (own.user + own.system - first[1]) / span
        children_cpu = sum(self._child_rate(pid, t, now) for pid, t in children.items())
        self._usage = Usage(cpu, children_cpu, rss, children_rss, threads, len(children))

    def _child_rate(self, pid: int, cpu_s: float, now: float) -> float:
        """One child's % of a core, from the oldest sample of the window that saw it (children
        are listed only every CHILDREN_EVERY_S, so a new worker may be missing from the first);
        seen only now: since it started, when that is inside the window (its whole life)."""
        for t0, _, seen in self._samples:
            if pid in seen and t0 < now:
                return 100 * max(0.0, cpu_s - seen[pid]) / (now - t0)
        with contextlib.suppress(psutil.Error, ValueError):
            age = time.time() - psutil.Process(pid).create_time()
            if 0 < age <= WINDOW_S:
                return 100 * cpu_s / age
        return 0.0

    def usage(self) -> Usage:
        # Sampled here too: a blocked loop also stops the lag probe that samples, and /runtime
        # may run before the probe's next tick; sample() itself keeps to MIN_INTERVAL_S.
        self.sample()
        return self._usage
