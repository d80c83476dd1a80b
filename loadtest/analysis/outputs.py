"""Write the results folder (where it goes, results.json), check for charts, report progress."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def new_dir(base: Path, suffix: str = "") -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    path = base / f"{stamp}{suffix}"
    n = 1
    while path.exists():  # two runs within a second: never overwrite results
        n += 1
        path = base / f"{stamp}-{n}{suffix}"
    path.mkdir(parents=True)
    return path


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=1, default=str) + "\n")


def charts_available() -> bool:
    """Charts need matplotlib; without it the numbers are still worth having."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        say("charts skipped: matplotlib is not installed (pip install matplotlib)")
        return False
    return True


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Progress:
    """ "[3/8] upstream x offload ... about 2m40s left", from the runs done so far."""

    def __init__(self, total: int, estimate_s: float) -> None:
        self.total, self.estimate_s = total, estimate_s
        self.done = 0
        self.started = time.monotonic()

    def step(self, label: str) -> None:
        left = self.total - self.done
        per_run = (time.monotonic() - self.started) / self.done if self.done else self.estimate_s
        say(f"[{self.done + 1}/{self.total}] {label} ... about {_span(left * per_run)} left")
        self.done += 1


def _span(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
