"""The server side of a run over synthetic watcher CSVs, written by the Locust watcher's own
writer (generator/server_watch.py: its Poll and Probe rows, Watch.write_csv) from recorded
/runtime answers: window, missing cells, timeouts, the run's verdict, bystander percentiles."""

from __future__ import annotations

import csv
import dataclasses
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from loadtest.analysis import server_csv, server_side
from loadtest.analysis.records import CpuSample
from loadtest.generator.server_watch import POLL_TIMEOUT_S, Poll, Probe, Watch
from loadtest.generator.verdict import decide

RUNTIME: dict[str, dict[str, Any]] = {
    name: sample["runtime"]
    for name, sample in json.loads(
        (Path(__file__).parent / "data" / "runtime_samples.json").read_text()
    ).items()
}
T0 = 1_700_000_000.0  # wall of the first poll
URL = "http://api.invalid"  # never called: the polls and probes are made here


def poll(
    runtime: dict[str, Any] | None,
    *,
    timed_out: bool = False,
    generator_cpu_pct: float | None = None,
    variant: str = "sync",
    target: bool = True,
) -> Poll:
    """One /runtime answer (None: no answer) as the watcher records it, verdict included."""
    verdict = decide(runtime, generator_cpu_pct, POLL_TIMEOUT_S if timed_out else None)
    return Poll(
        0.0, 0.0, variant, target, runtime is not None, timed_out, 3.0, runtime,
        generator_cpu_pct, verdict.kind, verdict.line,
    )  # fmt: skip


def polls_at(*polls: Poll) -> list[Poll]:
    """Polls one second apart from T0 (the watcher polls every second)."""
    return [dataclasses.replace(p, wall=T0 + i, t=float(i)) for i, p in enumerate(polls)]


def write(tmp_path: Path, polls: Iterable[Poll] = (), probes: Iterable[Probe] = ()) -> Path:
    """PREFIX_server.csv and PREFIX_bystander.csv as the watcher writes them; the prefix."""
    watch = Watch({}, URL, poll_all=False)
    watch.watched[URL].polls.extend(polls)
    watch.probes.extend(probes)
    prefix = tmp_path / "run"
    watch.write_csv(prefix)
    return prefix


def write_server(tmp_path: Path, polls: Iterable[Poll]) -> Path:
    return server_csv.server_path(write(tmp_path, polls))


def without(runtime: dict[str, Any], *fields: str) -> dict[str, Any]:
    """A copy of a /runtime answer whose "process" lacks `fields`."""
    copy = json.loads(json.dumps(runtime))
    for name in fields:
        del copy["process"][name]
    return copy


# Each _server.csv column that is a /runtime field, and where /runtime has it.
RUNTIME_FIELDS = {
    "loop_lag_ms": ("loop_lag_ms",),
    "threadpool_borrowed": ("threadpool", "borrowed"),
    "threadpool_total": ("threadpool", "total"),
    "db_in_use": ("db_pool", "in_use"),
    "db_waiting": ("db_pool", "waiting"),
    "db_max": ("db_pool", "max"),
    "executor_queued": ("executor", "queued"),
    "cpu_pct": ("process", "cpu_pct"),
    "children_cpu_pct": ("process", "children_cpu_pct"),
    "rss_mb": ("process", "rss_mb"),
    "threads": ("process", "threads"),
}


@pytest.mark.parametrize("name", sorted(RUNTIME))
def test_a_poll_reads_back_as_the_runtime_it_recorded(tmp_path: Path, name: str) -> None:
    """The watcher's row, read by compare: every /runtime field, in_flight less the poll."""
    runtime: dict[str, Any] | None = RUNTIME[name]
    (sample,) = server_csv.read_server(write_server(tmp_path, polls_at(poll(runtime)))) or []
    for column, path in RUNTIME_FIELDS.items():
        value: Any = runtime
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        assert sample[column] == (None if value is None else pytest.approx(value, abs=1e-3))
    in_flight = None if runtime is None else max(0, runtime["in_flight"] - 1)
    assert sample["in_flight"] == in_flight  # a recorded poll may have had no answer
    assert (sample["wall"], sample["ok"], sample["timed_out"]) == (T0, runtime is not None, False)
    assert (sample["verdict_kind"], sample["verdict"]) == (
        decide(runtime, None, None).kind,
        decide(runtime, None, None).line,
    )


def test_missing_files_read_as_none(tmp_path: Path) -> None:
    assert server_csv.read_server(tmp_path / "nope_server.csv") is None
    assert server_csv.read_bystander(tmp_path / "nope_bystander.csv") is None


def test_rows_missing_cells_and_timeouts(tmp_path: Path) -> None:
    rows = polls_at(
        poll(RUNTIME["sync-upstream-200"]),
        poll(None, timed_out=True),  # /runtime did not answer within 2.5 s
        poll(without(RUNTIME["async-upstream-20"], "cpu_pct", "rss_mb")),
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
    assert peaks["threadpool_borrowed"] == 40
    lags = (RUNTIME[name]["loop_lag_ms"] for name in ("sync-upstream-200", "async-upstream-20"))
    assert peaks["loop_lag_ms"] == pytest.approx(max(lags), abs=1e-3)


def test_only_the_loaded_targets_rows(tmp_path: Path) -> None:
    """A watcher that polls every variant for its web UI tab writes theirs with target 0."""
    loaded = poll(RUNTIME["sync-upstream-200"], variant="sync", target=True)
    other = poll(RUNTIME["async-upstream-20"], variant="async", target=False)
    samples = server_csv.read_server(write_server(tmp_path, polls_at(loaded, other, loaded)))
    assert samples is not None and [s["t"] for s in samples] == [0.0, 2.0]
    assert {s["verdict_kind"] for s in samples} == {"threadpool"}


def test_an_older_watcher_without_a_column(tmp_path: Path) -> None:
    path = write_server(tmp_path, polls_at(poll(RUNTIME["offload-cpu-20"])))
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    columns = [c for c in server_csv.SERVER_COLUMNS if c != "children_cpu_pct"]
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    (sample,) = server_csv.read_server(path) or []
    assert sample["children_cpu_pct"] is None and sample["cpu_pct"] is not None


def test_window_is_locusts_measured_span(tmp_path: Path) -> None:
    idle = poll(RUNTIME["async-upstream-20"])
    busy = poll(RUNTIME["blocking-upstream-20"])
    # 2 warm-up polls (t 0, 1), 3 measured (t 2..4), 1 after the last request (t 5)
    rows = polls_at(busy, busy, idle, idle, idle, busy)
    samples = server_csv.read_server(write_server(tmp_path, rows))
    assert samples is not None
    window = server_side.in_window(samples, T0 + 2, T0 + 4)
    assert [s["t"] for s in window] == [2.0, 3.0, 4.0]
    assert server_side.server_summary(window, "locust")["verdict_kind"] == "none"
    assert server_side.in_window(samples, None, None) == []  # Locust counted nothing


def test_verdict_majority_tie_and_representative_line(tmp_path: Path) -> None:
    def pool(borrowed: int, in_flight: int) -> Poll:
        runtime = json.loads(json.dumps(RUNTIME["sync-upstream-200"]))
        runtime["threadpool"]["borrowed"], runtime["in_flight"] = borrowed, in_flight + 1
        return poll(runtime)

    lines = polls_at(pool(40, 100), pool(40, 180), pool(40, 140), poll(None, timed_out=True))
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
    rows = polls_at(*[poll(RUNTIME["sync-upstream-200"])] * 3)
    samples = server_csv.read_server(write_server(tmp_path, rows)) or []
    hot = [cpu_at(T0 + i + 0.3, 97.0) for i in range(3)]
    summary = server_side.server_summary(samples, "locust", hot)
    assert summary["verdict_kind"] == "generator" and "97 %" in (summary["verdict"] or "")
    cool = [cpu_at(T0 + i + 0.3, 30.0) for i in range(3)]
    assert server_side.server_summary(samples, "locust", cool)["verdict_kind"] == "threadpool"
    # a row that knew Locust's CPU keeps its own verdict
    known = polls_at(*[poll(RUNTIME["sync-upstream-200"], generator_cpu_pct=40.0)] * 3)
    samples = server_csv.read_server(write_server(tmp_path, known)) or []
    assert server_side.server_summary(samples, "locust", hot)["verdict_kind"] == "threadpool"


def test_bystander_percentiles_failures_and_window(tmp_path: Path) -> None:
    # 1 .. 100 ms, one probe every 0.2 s
    rows = [Probe(T0 + i * 0.2, i * 0.2, float(i + 1), 200, "") for i in range(100)]
    rows[10] = dataclasses.replace(rows[10], status=None, error="timeout", latency_ms=2500.0)
    rows[11] = dataclasses.replace(rows[11], status=503)  # answered, but not OK
    refused = "refused: connection refused"
    rows[12] = dataclasses.replace(rows[12], status=None, error=refused, latency_ms=0.3)
    unfinished = "unfinished at stop"
    rows[13] = dataclasses.replace(rows[13], status=None, error=unfinished, latency_ms=4000.0)
    probes = server_csv.read_bystander(server_csv.bystander_path(write(tmp_path, probes=rows)))
    assert probes is not None
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


def test_a_run_without_the_watchers_csvs_has_no_server_samples_and_one_warning(
    tmp_path: Path,
) -> None:
    """Locust crashed (or was killed) before the watcher wrote its files: the run's record has
    no server samples, empty summaries, and says so once (not also as unanswered polls)."""
    from loadtest.analysis.littles_law import Limits
    from loadtest.analysis.locust_stats import Summary
    from loadtest.generator.scenarios import SCENARIOS
    from loadtest.orchestrate import measure
    from loadtest.orchestrate.run import Load, RunOutcome, RunSpec

    runtime = RUNTIME["async-upstream-20"]
    target = measure.Target("async", URL, Limits.from_runtime(runtime), 2, {})
    load = Load(users=10, spawn_rate=10, duration_s=30)
    spec = RunSpec(SCENARIOS["upstream"], URL, load, tmp_path / "run")
    summary = Summary(100, 0, 0.0, 10.0, 100.0, 120.0, 150.0, 105.0, 160.0, T0, T0 + 30)
    outcome = RunOutcome(spec, spec.command(), 0, 31.0, False, summary, [])
    assert (outcome.server_source, outcome.bystander_samples) == ("none", None)
    record = measure._record(SCENARIOS["upstream"], target, load, outcome)
    warnings = measure._judge(outcome, record, load, None)
    assert warnings == [
        "Locust wrote no _server.csv or _bystander.csv (the server watcher's files; see the "
        "run's .log): no server samples; no bystander latency"
    ]
    assert record["server_samples"] == [] and record["bystander_samples"] == []
    assert record["server"]["source"] == "none" and record["server"]["polls"] == 0
    assert record["server"]["verdict"] is None and record["bystander"]["probes"] == 0
    assert record["server_peaks"]["polls_sent"] == 0
    assert "server_csv" not in outcome.files()
    # the report says where the server samples came from: nowhere
    from loadtest.analysis import report

    assert report._sources_line([record]) == ("Server samples: none (Locust wrote no _server.csv).")
    # only the bystander's file missing: still one warning, naming just that
    with_server = dataclasses.replace(outcome, server_source="locust")
    assert measure._server_source_warning(with_server) == (
        "Locust wrote no _bystander.csv (the server watcher's files; see the run's .log): "
        "no bystander latency"
    )


def test_locust_summary_is_stored_as_the_stats_record() -> None:
    """Summary.as_dict() is results.json's `stats`: the dataclass and the TypedDict keep the
    same fields, in the same order."""
    from dataclasses import fields
    from typing import get_type_hints

    from loadtest.analysis.locust_stats import Summary
    from loadtest.analysis.records import Stats

    assert [f.name for f in fields(Summary)] == list(get_type_hints(Stats))
    stats = Summary(3, 1, 33.3, 1.5, 10, 20, 30, 15.0, 40, T0, T0 + 2).as_dict()
    assert stats["p95_ms"] == 20 and stats["ended_at"] == T0 + 2 and len(stats) == 11
