"""The server side of a run over synthetic watcher CSVs (tests/fake_watcher.py writes them in the
agreed format): window, missing cells, timeouts, the run's verdict, bystander percentiles."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from loadtest.analysis import server_csv, server_side
from loadtest.analysis.records import CpuSample
from tests.fake_watcher import BYSTANDER_COLUMNS, SERVER_COLUMNS, server_row, write_rows

RUNTIME: dict[str, dict[str, Any]] = {
    name: sample["runtime"]
    for name, sample in json.loads(
        (Path(__file__).parent / "data" / "runtime_samples.json").read_text()
    ).items()
}
T0 = 1_700_000_000.0  # wall of the first poll


def rows_at(*rows: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows one second apart from T0 (the watcher polls every second)."""
    return [{"wall": T0 + i, "t": float(i), "poll_ms": 3.0, **r} for i, r in enumerate(rows)]


def write_server(tmp_path: Path, rows: list[dict[str, Any]]) -> Path:
    path = server_csv.server_path(tmp_path / "run")
    write_rows(path, SERVER_COLUMNS, rows)
    return path


def test_agreed_columns() -> None:
    assert server_csv.SERVER_COLUMNS == SERVER_COLUMNS
    assert server_csv.BYSTANDER_COLUMNS == BYSTANDER_COLUMNS


def test_missing_files_read_as_none(tmp_path: Path) -> None:
    assert server_csv.read_server(tmp_path / "nope_server.csv") is None
    assert server_csv.read_bystander(tmp_path / "nope_bystander.csv") is None


def test_rows_missing_cells_and_timeouts(tmp_path: Path) -> None:
    rows = rows_at(
        server_row(RUNTIME["sync-upstream-200"]),
        server_row(None, timed_out=True),  # /runtime did not answer within 2.5 s
        server_row(RUNTIME["async-upstream-20"]) | {"cpu_pct": None, "rss_mb": None},
    )
    samples = server_csv.read_server(write_server(tmp_path, rows))
    assert samples is not None and len(samples) == 3
    first, timed_out, no_cpu = samples
    assert first["ok"] and not first["timed_out"] and first["threadpool_total"] == 40
    assert first["verdict_kind"] == "threadpool" and first["generator_cpu_pct"] is None
    assert not timed_out["ok"] and timed_out["timed_out"]
    assert timed_out["cpu_pct"] is None and timed_out["loop_lag_ms"] is None
    assert timed_out["verdict_kind"] == "loop" and "2.5 s" in (timed_out["verdict"] or "")
    assert no_cpu["cpu_pct"] is None and no_cpu["loop_lag_ms"] is not None
    summary = server_side.server_summary(samples, "locust")
    assert (summary["polls"], summary["answered"], summary["timed_out"]) == (3, 2, 1)
    cpu = RUNTIME["sync-upstream-200"]["process"]["cpu_pct"]
    assert summary["cpu_mean_pct"] == pytest.approx(cpu, abs=0.05)  # the empty cell is skipped
    peaks = server_side.peaks(samples)
    assert peaks["polls_sent"] == 3 and peaks["polls_answered"] == 2
    assert peaks["threadpool_borrowed"] == 40 and peaks["loop_lag_max_ms"] is None


def test_only_the_loaded_targets_rows(tmp_path: Path) -> None:
    """A watcher that polls every variant for its web UI tab writes theirs with target 0."""
    loaded = server_row(RUNTIME["sync-upstream-200"], variant="sync", target=1)
    other = server_row(RUNTIME["async-upstream-20"], variant="async", target=0)
    samples = server_csv.read_server(write_server(tmp_path, rows_at(loaded, other, loaded)))
    assert samples is not None and [s["t"] for s in samples] == [0.0, 2.0]
    assert {s["verdict_kind"] for s in samples} == {"threadpool"}


def test_an_older_watcher_without_a_column(tmp_path: Path) -> None:
    path = server_csv.server_path(tmp_path / "old")
    columns = [c for c in SERVER_COLUMNS if c != "children_cpu_pct"]
    write_rows(path, columns, rows_at(server_row(RUNTIME["offload-cpu-20"])))
    (sample,) = server_csv.read_server(path) or []
    assert sample["children_cpu_pct"] is None and sample["cpu_pct"] is not None


def test_window_is_locusts_measured_span(tmp_path: Path) -> None:
    idle = server_row(RUNTIME["async-upstream-20"])
    busy = server_row(RUNTIME["blocking-upstream-20"])
    # 2 warm-up polls (t 0, 1), 3 measured (t 2..4), 1 after the last request (t 5)
    rows = rows_at(busy, busy, idle, idle, idle, busy)
    samples = server_csv.read_server(write_server(tmp_path, rows))
    assert samples is not None
    window = server_side.in_window(samples, T0 + 2, T0 + 4)
    assert [s["t"] for s in window] == [2.0, 3.0, 4.0]
    assert server_side.server_summary(window, "locust")["verdict_kind"] == "none"
    assert server_side.in_window(samples, None, None) == []  # Locust counted nothing


def test_verdict_majority_tie_and_representative_line(tmp_path: Path) -> None:
    def pool(borrowed: int, in_flight: int) -> dict[str, Any]:
        runtime = json.loads(json.dumps(RUNTIME["sync-upstream-200"]))
        runtime["threadpool"]["borrowed"], runtime["in_flight"] = borrowed, in_flight + 1
        return server_row(runtime)

    lines = rows_at(pool(40, 100), pool(40, 180), pool(40, 140), server_row(None, timed_out=True))
    samples = server_csv.read_server(write_server(tmp_path, lines)) or []
    summary = server_side.server_summary(samples, "locust")
    assert summary["verdict_kind"] == "threadpool"
    assert summary["verdict_counts"] == {"threadpool": 3, "loop": 1}
    assert summary["verdict_polls"] == 3
    # the median poll by in-flight requests (140), not the first or the worst
    assert summary["verdict"] == "threadpool: 40/40 tokens busy, 100 requests waiting for a token"
    # a tie goes to the earlier rule of verdict.decide: loop before threadpool
    tie = samples[:1] + samples[3:]
    assert server_side.server_summary(tie, "locust")["verdict_kind"] == "loop"
    assert server_side.server_summary([], "locust")["verdict"] is None


def cpu_at(wall: float, busiest: float) -> CpuSample:
    return CpuSample(
        total_pct=busiest, busiest_pct=busiest, machine_pct=busiest / 2, processes=1, t=0, wall=wall
    )


def test_locusts_cpu_from_compare_when_the_row_has_none(tmp_path: Path) -> None:
    rows = rows_at(*[server_row(RUNTIME["sync-upstream-200"])] * 3)
    samples = server_csv.read_server(write_server(tmp_path, rows)) or []
    hot = [cpu_at(T0 + i + 0.3, 97.0) for i in range(3)]
    summary = server_side.server_summary(samples, "locust", hot)
    assert summary["verdict_kind"] == "generator" and "97 %" in (summary["verdict"] or "")
    cool = [cpu_at(T0 + i + 0.3, 30.0) for i in range(3)]
    assert server_side.server_summary(samples, "locust", cool)["verdict_kind"] == "threadpool"
    # a row that knew Locust's CPU keeps its own verdict
    known = rows_at(*[server_row(RUNTIME["sync-upstream-200"], generator_cpu_pct=40.0)] * 3)
    samples = server_csv.read_server(write_server(tmp_path, known)) or []
    assert server_side.server_summary(samples, "locust", hot)["verdict_kind"] == "threadpool"


def test_bystander_percentiles_failures_and_window(tmp_path: Path) -> None:
    latencies = [float(ms) for ms in range(1, 101)]  # 1 .. 100 ms
    rows = [
        {"wall": T0 + i * 0.2, "t": i * 0.2, "latency_ms": ms, "status": 200}
        for i, ms in enumerate(latencies)
    ]
    rows[10] |= {"status": None, "error": "timeout", "latency_ms": 2500.0}  # waited: counts
    rows[11] |= {"status": 503}  # answered, but not OK
    rows[12] |= {"status": None, "error": "refused: connection refused", "latency_ms": 0.3}
    rows[13] |= {"status": None, "error": "unfinished at stop", "latency_ms": 4000.0}
    path = server_csv.bystander_path(tmp_path / "run")
    write_rows(path, BYSTANDER_COLUMNS, rows)
    probes = server_csv.read_bystander(path) or []
    assert len(probes) == 100 and probes[12]["status"] is None and probes[0]["error"] is None
    summary = server_side.bystander_summary(probes)
    assert (summary["probes"], summary["failures"]) == (100, 4)
    # 99 latencies (not the refused one, which never waited): nearest rank p50 = the 50th
    # smallest, p99 = the 99th: the probe still waiting at the stop, after the 2.5 s timeout
    kept = sorted(p["latency_ms"] for i, p in enumerate(probes) if i != 12)
    assert kept[-2:] == [2500.0, 4000.0]
    assert summary["p50_ms"] == kept[49] and summary["p99_ms"] == kept[98] == 4000.0
    window = server_side.in_window(probes, T0 + 0.2 * 50, T0 + 0.2 * 59)
    assert server_side.bystander_summary(window)["probes"] == 10
    empty = server_side.bystander_summary([])
    assert empty == {"probes": 0, "failures": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}


def test_percentile_is_nearest_rank() -> None:
    assert server_side.percentile([], 0.5) is None
    assert server_side.percentile([7.0], 0.99) == 7.0
    assert server_side.percentile([4.0, 1.0, 3.0, 2.0], 0.5) == 2.0
    assert server_side.percentile([float(i) for i in range(1, 201)], 0.99) == 198.0


@pytest.mark.parametrize("name", sorted(RUNTIME))
def test_compares_own_poller_fills_the_same_row(name: str) -> None:
    """The fallback (monitor.RuntimeSampler) and the watcher's row agree on every column."""
    ours = server_side.sample_from_runtime(
        RUNTIME[name], wall=T0, t=0.0, poll_ms=1.0, timed_out=False, poll_timeout_s=2.5
    )
    theirs = server_row(RUNTIME[name])
    for column in SERVER_COLUMNS:
        if column in theirs and column in ours:
            assert ours[column] == theirs[column], column


def run_record(**server: Any) -> dict[str, Any]:
    """Just what report.py's server cells read from a RunRecord."""
    base = server_side.server_summary([], "locust")
    bystander = {"probes": 25, "failures": 1, "p50_ms": 2.44, "p99_ms": 812.0, "max_ms": 900.0}
    return {"variant": "offload", "server": base | server, "bystander": bystander}


def test_report_cells_show_the_workers_only_when_they_worked() -> None:
    from loadtest.analysis import report

    busy = run_record(
        cpu_mean_pct=12.2, cpu_peak_pct=13.0, children_cpu_mean_pct=138.4,
        children_cpu_peak_pct=146.0, verdict="CPU executor: 2 workers busy", verdict_polls=7,
        polls=8,
    )  # fmt: skip
    idle = run_record(cpu_mean_pct=3.0, cpu_peak_pct=4.0, children_cpu_peak_pct=0.0)
    runs: Any = [busy, idle]
    assert report._has_children(runs) and not report._has_children(runs[1:])
    assert len(report.server_columns(True)[0].split("|")) == 8  # 6 columns
    cells = report.server_cells(busy, True)
    assert cells == [
        "`offload`", "12 / 13", "138 / 146", "2.4 / 812", "25 (1)",
        "CPU executor: 2 workers busy; 7/8 polls",
    ]  # fmt: skip
    assert report.server_cells(idle, False)[-1] == "n/a"
    assert report.cpu_text(busy) == "12 / 13 (workers 138 / 146)"
    assert report.cpu_text(idle) == "3 / 4"


def test_the_fallback_is_said_in_a_warning() -> None:
    from types import SimpleNamespace

    from loadtest.orchestrate.measure import _server_source_warning

    def outcome(source: str, probes: list[Any] | None) -> Any:
        return SimpleNamespace(server_source=source, bystander_samples=probes)

    assert _server_source_warning(outcome("locust", [])) is None
    assert _server_source_warning(outcome("compare", None)) == (
        "Locust wrote no _server.csv or _bystander.csv (no server watcher): server samples "
        "from compare's own /runtime poller; no bystander latency"
    )
    # run.POLL_RUNTIME False (after the watcher merges) and an older locustfile
    assert _server_source_warning(outcome("none", None)) == (
        "Locust wrote no _server.csv or _bystander.csv (no server watcher): no server samples; "
        "no bystander latency"
    )
