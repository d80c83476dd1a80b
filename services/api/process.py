"""This process's share of the machine: the CPUs it may use."""

from __future__ import annotations

import os
from pathlib import Path


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
