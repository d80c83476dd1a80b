"""Facts about the machine that psutil does not report: the CPU model, CPU pressure (PSI).

Standard library only, so the Locust image (which copies services/lab/ without the API's
dependencies) can import it too.
"""

import math
import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's marketing name (`model name` in /proc/cpuinfo), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def cpu_pressure_s() -> float:
    """Seconds some runnable task waited for a CPU since boot (Linux PSI), or NaN.

    Read by hand: psutil has no API for /proc/pressure (pressure stall information)."""
    try:
        first = Path("/proc/pressure/cpu").read_text().split("\n", 1)[0]
        return int(first.rsplit("total=", 1)[1]) / 1e6
    except (OSError, IndexError, ValueError):
        return math.nan
