"""A stand-in for the Locust watcher (generator layer, written in parallel): the same two files
in the agreed format, from a tiny writer, so compare's reading of them is tested before the real
watcher merges. `install()` registers it in a locustfile (tests/data/watcher_locustfile.py).

Agreed format, written when a headless run started with `--csv PREFIX` ends:
- PREFIX_server.csv: one row per /runtime poll of the loaded target (every 1 s, 2.5 s timeout);
  `wall` epoch s, ok/timed_out 1/0, empty cells when /runtime gave nothing, in_flight without
  the poll itself.
- PREFIX_bystander.csv: one GET /healthz every 0.2 s on the loaded target; error filled when it
  failed or timed out.
`wall` is when a poll or probe was sent; `target` is 1 on the loaded target's rows (a watcher
that also polls the other variants, for its web UI, writes theirs with 0); a probe's error is
"timeout" (or "unfinished at stop") when it waited, its latency then a lower bound.
Probes still waiting when Locust quits are not written by this stand-in.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

SERVER_COLUMNS = (
    "wall", "t", "variant", "target", "ok", "timed_out", "poll_ms", "loop_lag_ms",
    "threadpool_borrowed", "threadpool_total", "db_in_use", "db_waiting", "db_max", "in_flight",
    "executor_queued", "cpu_pct", "children_cpu_pct", "rss_mb", "threads", "generator_cpu_pct",
    "verdict_kind", "verdict",
)  # fmt: skip
BYSTANDER_COLUMNS = ("wall", "t", "latency_ms", "status", "error")
# loadtest/locustfile.py plus this stand-in: pass as RunSpec's locustfile
WATCHER_LOCUSTFILE = Path(__file__).parent / "data" / "watcher_locustfile.py"


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def write_rows(path: Path, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> None:
    """Rows as the watcher writes them: every column, empty where a row has no value."""
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_cell(row.get(c)) for c in columns])


def server_row(runtime: Mapping[str, Any] | None, **fields: Any) -> dict[str, Any]:
    """A _server.csv row from one /runtime answer (None: no answer), as the watcher builds it."""
    from loadtest.generator.verdict import decide

    r: Mapping[str, Any] = runtime or {}

    def get(*path: str) -> Any:
        value: Any = r
        for part in path:
            value = value.get(part) if isinstance(value, Mapping) else None
        return value

    in_flight = get("in_flight")
    timed_out = fields.get("timed_out", False)
    verdict = decide(runtime, fields.get("generator_cpu_pct"), 2.5 if timed_out else None)
    row = {
        "ok": runtime is not None,
        "timed_out": timed_out,
        "loop_lag_ms": get("loop_lag_ms"),
        "threadpool_borrowed": get("threadpool", "borrowed"),
        "threadpool_total": get("threadpool", "total"),
        "db_in_use": get("db_pool", "in_use"),
        "db_waiting": get("db_pool", "waiting"),
        "db_max": get("db_pool", "max"),
        "in_flight": None if in_flight is None else max(0, in_flight - 1),
        "executor_queued": get("executor", "queued"),
        "cpu_pct": get("process", "cpu_pct"),
        "children_cpu_pct": get("process", "children_cpu_pct"),
        "rss_mb": get("process", "rss_mb"),
        "threads": get("process", "threads"),
        "verdict_kind": verdict.kind,
        "verdict": verdict.line,
    }
    return {**row, **fields}


def install() -> None:
    """Poll the loaded target from the Locust process (master / single process only) and write
    both files when Locust quits. Locust's CPU is left empty: compare fills it in."""
    import gevent
    import requests
    from locust import events
    from locust.env import Environment
    from locust.runners import WorkerRunner

    server: list[dict[str, Any]] = []
    bystander: list[dict[str, Any]] = []
    t0 = time.time()

    def poll_runtime(url: str, variant: str) -> None:
        while True:
            began = time.time()
            try:
                with gevent.Timeout(2.5):  # the whole poll, not each socket read
                    answer = requests.get(f"{url}/runtime", timeout=2.5).json()
                row = server_row(answer, variant=answer.get("variant"))
            except (gevent.Timeout, requests.Timeout):
                row = server_row(None, timed_out=True)
            except (requests.RequestException, ValueError):
                row = server_row(None)
            row |= {"wall": round(began, 3), "t": round(began - t0, 3), "target": 1}
            row["poll_ms"] = round((time.time() - began) * 1000, 1)
            server.append(row)
            gevent.sleep(max(0.0, 1.0 - (time.time() - began)))

    def probe(url: str) -> None:
        while True:
            began = time.time()
            row: dict[str, Any] = {"wall": round(began, 3), "t": round(began - t0, 3)}
            try:
                with gevent.Timeout(2.5):
                    response = requests.get(f"{url}/healthz", timeout=2.5)
                row["status"] = response.status_code
                if response.status_code >= 400:
                    row["error"] = f"HTTP {response.status_code}"
            except (gevent.Timeout, requests.Timeout):
                row["error"] = "timeout"  # waited: counts in the percentiles
            except requests.RequestException as exc:
                row["error"] = type(exc).__name__
            row["latency_ms"] = round((time.time() - began) * 1000, 2)
            bystander.append(row)
            gevent.sleep(max(0.0, 0.2 - (time.time() - began)))

    def start(environment: Environment, **kwargs: object) -> None:
        if isinstance(environment.runner, WorkerRunner) or environment.host is None:
            return
        gevent.spawn(poll_runtime, environment.host, "")
        gevent.spawn(probe, environment.host)

    def quit(environment: Environment, **kwargs: object) -> None:
        prefix = getattr(environment.parsed_options, "csv_prefix", None)
        if not prefix or isinstance(environment.runner, WorkerRunner):
            return
        write_rows(Path(f"{prefix}_server.csv"), SERVER_COLUMNS, server)
        write_rows(Path(f"{prefix}_bystander.csv"), BYSTANDER_COLUMNS, bystander)

    events.test_start.add_listener(start)
    events.quitting.add_listener(quit)
