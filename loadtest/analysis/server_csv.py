"""Read the Locust watcher's files, PREFIX_server.csv and PREFIX_bystander.csv, into typed samples.

The watcher (generator layer) polls the loaded target's /runtime every second and probes its
/healthz every 0.2 s, and writes both files next to Locust's own CSVs when a headless run started
with `--csv PREFIX` ends. Empty cells (nothing from /runtime) become None; a file without a column
(an older watcher) reads as None in that column. `wall` is as the watcher wrote it (when the
poll or probe was sent).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from loadtest.analysis.records import BystanderSample, ServerSample

# The columns the watcher writes, from the watcher itself (one definition).
from loadtest.generator.server_watch import BYSTANDER_COLUMNS, SERVER_COLUMNS

__all__ = ["BYSTANDER_COLUMNS", "SERVER_COLUMNS", "read_bystander", "read_server"]


def server_path(prefix: Path | str) -> Path:
    return Path(f"{prefix}_server.csv")


def bystander_path(prefix: Path | str) -> Path:
    return Path(f"{prefix}_bystander.csv")


def read_server(path: Path) -> list[ServerSample] | None:
    """The loaded target's rows of a _server.csv, in file order; None when there is no such file.
    A watcher that also polls the other variants (for its web UI tab) marks them target 0."""
    if not path.exists():
        return None
    samples: list[ServerSample] = []
    for row in _rows(path):
        wall = _num(row.get("wall"))
        if wall is None:
            continue  # not a poll (a truncated last line)
        if (row.get("target") or "").strip().lower() in ("0", "false"):
            continue  # another variant than the one loaded
        samples.append(
            ServerSample(
                wall=wall,
                t=_num(row.get("t")) or 0.0,
                ok=_flag(row.get("ok")),
                timed_out=_flag(row.get("timed_out")),
                poll_ms=_num(row.get("poll_ms")),
                loop_lag_ms=_num(row.get("loop_lag_ms")),
                threadpool_borrowed=_num(row.get("threadpool_borrowed")),
                threadpool_total=_num(row.get("threadpool_total")),
                db_in_use=_num(row.get("db_in_use")),
                db_waiting=_num(row.get("db_waiting")),
                db_max=_num(row.get("db_max")),
                in_flight=_num(row.get("in_flight")),
                executor_queued=_num(row.get("executor_queued")),
                cpu_pct=_num(row.get("cpu_pct")),
                children_cpu_pct=_num(row.get("children_cpu_pct")),
                rss_mb=_num(row.get("rss_mb")),
                threads=_num(row.get("threads")),
                generator_cpu_pct=_num(row.get("generator_cpu_pct")),
                verdict_kind=row.get("verdict_kind") or None,
                verdict=row.get("verdict") or None,
            )
        )
    return samples


def read_bystander(path: Path) -> list[BystanderSample] | None:
    """Every probe of a _bystander.csv, in file order; None when there is no such file."""
    if not path.exists():
        return None
    samples: list[BystanderSample] = []
    for row in _rows(path):
        wall = _num(row.get("wall"))
        if wall is None:
            continue
        status = _num(row.get("status"))
        samples.append(
            BystanderSample(
                wall=wall,
                t=_num(row.get("t")) or 0.0,
                latency_ms=_num(row.get("latency_ms")),
                status=None if status is None else int(status),
                error=row.get("error") or None,
            )
        )
    return samples


def _rows(path: Path) -> Iterator[dict[str, str]]:
    with path.open(newline="") as fh:
        yield from csv.DictReader(fh)


def _num(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        return None


def _flag(text: str | None) -> bool:
    return (text or "").strip().lower() in ("1", "true", "yes")
