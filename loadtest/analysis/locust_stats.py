"""Read a finished Locust run back: its --json-file (totals) and _stats_history.csv (time).

The totals come from the JSON, not from _stats.csv: Locust rewrites the CSV on a 1-second timer
that does not run at shutdown, so the CSV misses the last second and every request that finished
during --stop-timeout; the JSON is written once the runner has stopped, with everything.
Locust itself is not imported: importing it monkey-patches the whole process with gevent.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import cast

from loadtest.analysis.records import HistoryRow, Stats


@dataclass(frozen=True)
class Summary:
    requests: int
    failures: int
    failure_pct: float | None
    rps: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    avg_ms: float | None
    max_ms: float | None
    started_at: float | None = None  # epoch s of the first request
    ended_at: float | None = None  # epoch s of the last request

    def as_dict(self) -> Stats:
        # Stats is this record as results.json stores it: the same fields (a test keeps them so)
        return cast(Stats, asdict(self))


def percentile(response_times: Counter[int], total: int, fraction: float) -> int | None:
    """Locust's own rule (stats.calculate_response_time_percentile) on its rounded buckets,
    so our p95 is the number Locust's report shows for the same data."""
    if total == 0:
        return None
    wanted = int(total * fraction)
    seen = 0
    for bucket in sorted(response_times, reverse=True):
        seen += response_times[bucket]
        if total - seen <= wanted:
            return bucket
    return 0


def summarize(json_path: Path) -> Summary:
    """All request names of the run together, as Locust's "Aggregated" row."""
    entries = json.loads(json_path.read_text()) if json_path.exists() else []
    buckets: Counter[int] = Counter()
    requests = failures = 0
    total_ms = max_ms = 0.0
    start, last = float("inf"), 0.0
    for entry in entries:
        requests += entry["num_requests"]
        failures += entry["num_failures"]
        total_ms += entry["total_response_time"]
        max_ms = max(max_ms, entry["max_response_time"] or 0.0)
        buckets.update({int(k): v for k, v in entry["response_times"].items()})
        start = min(start, entry["start_time"])
        last = max(last, entry["last_request_timestamp"] or 0.0)
    if requests == 0:
        return Summary(0, failures, None, 0.0, None, None, None, None, None)
    # Locust's Requests/s: requests over the span from the first to the last request.
    span = last - start
    return Summary(
        requests=requests,
        failures=failures,
        failure_pct=100 * failures / requests,
        rps=requests / span if span > 0 else None,
        p50_ms=percentile(buckets, requests, 0.50),
        p95_ms=percentile(buckets, requests, 0.95),
        p99_ms=percentile(buckets, requests, 0.99),
        avg_ms=total_ms / requests,
        max_ms=max_ms,
        started_at=start,
        ended_at=last,
    )


def history(csv_path: Path) -> list[HistoryRow]:
    """The "Aggregated" rows of _stats_history.csv: t (s from the first row), users, rps and
    the current-window p50/p95/p99 (Locust's last ~10 s), None where Locust wrote N/A."""
    if not csv_path.exists():
        return []
    rows: list[HistoryRow] = []
    with csv_path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            if row["Name"] != "Aggregated":
                continue
            rows.append(
                {
                    "t": float(row["Timestamp"]),
                    "wall": float(row["Timestamp"]),
                    "users": _num(row["User Count"]),
                    "rps": _num(row["Requests/s"]),
                    "p50_ms": _num(row["50%"]),
                    "p95_ms": _num(row["95%"]),
                    "p99_ms": _num(row["99%"]),
                    "requests": _num(row["Total Request Count"]),
                }
            )
    if rows:
        t0 = rows[0]["t"]
        for kept in rows:
            kept["t"] -= t0
    return rows


def _num(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None
