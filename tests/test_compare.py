"""`python -m loadtest.compare`: real Locust runs against real servers, tiny and short.

The numbers in report.md and results.json must be the run's own: they are read back and held
against the files Locust wrote for that run.
"""

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from loadtest.analysis import checks
from loadtest.analysis.report import fmt_ms, fmt_rps
from loadtest.compare import main  # the entry point's path, as `make compare` runs it
from loadtest.orchestrate.run import Load
from services.registry import NAMES
from tests.server_checks import check_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def only_dir(parent: Path) -> Path:
    (folder,) = [p for p in parent.iterdir() if p.is_dir()]
    return folder


def targets(urls: dict[str, str], *variants: str) -> str:
    return ",".join(f"{v}={urls[v]}" for v in variants)


def locust_csv_total(path: Path) -> dict[str, str]:
    with path.open(newline="") as fh:
        (row,) = [r for r in csv.DictReader(fh) if r["Name"] == "Aggregated"]
    return row


def report_rows(report: str, scenario: str, table: int = 0) -> dict[str, list[str]]:
    """The variant rows of one scenario's table in report.md (0: the load's, 1: the server
    side's), as lists of cells."""
    section = report.split(f"## {scenario}:", 1)[1].split("\n## ", 1)[0]
    section = section.split("Server side:\n", 1)[table]
    rows = {}
    for line in section.splitlines():
        if m := re.match(r"\| `(\w+)` \|", line):
            rows[m.group(1)] = [c.strip() for c in line.strip("|").split("|")]
    return rows


@pytest.fixture(scope="module")
def tiny_run(lab_apis: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("compare")
    code = main(
        [
            "--scenarios", "upstream",
            "--variants", "async,blocking",
            "--users", "10",
            "--duration", "4s",
            "--warmup", "1s",
            "--delay-ms", "100",
            "--targets", targets(lab_apis, "async", "blocking"),
            "--out", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    return only_dir(out)


def test_writes_report_results_and_charts(tiny_run: Path) -> None:
    assert (tiny_run / "report.md").is_file()
    results = json.loads((tiny_run / "results.json").read_text())
    assert [(r["scenario"], r["variant"]) for r in results["runs"]] == [
        ("upstream", "async"),
        ("upstream", "blocking"),
    ]
    charts = results["charts"]["upstream"]
    assert set(charts.values()) == {"upstream-bars.png", "upstream-over-time.png"}
    for name in charts.values():
        data = (tiny_run / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000
    for key in ("cores", "cpu_model", "memory_gib"):
        assert results["machine"][key]
    assert results["versions"]["locust"] == "2.47.0"
    assert results["command"].startswith("python -m loadtest.compare --scenarios upstream")
    # the options are the Load's own fields, under the names results.json always had
    assert list(results["options"]) == [
        "scenarios", "variants", "users", "spawn_rate", "duration_s", "warmup_s", "delay_ms",
        "work", "stop_timeout_s", "cpu_warn_pct", "sample_interval_s",
    ]  # fmt: skip
    assert results["options"]["duration_s"] == 4 and results["options"]["warmup_s"] == 1
    for variant in ("async", "blocking"):
        assert results["targets"][variant]["settings"]["api_variant"] == variant
    for run in results["runs"]:
        for kind in ("stats_csv", "history_csv", "json", "html"):
            assert (tiny_run / run["files"][kind]).is_file()
        # the warm-up ran (the history starts with it) but its statistics were dropped: the
        # totals start about --warmup (1 s) after the first history row
        with (tiny_run / run["files"]["history_csv"]).open(newline="") as fh:
            first = min(int(r["Timestamp"]) for r in csv.DictReader(fh))
        entries = json.loads((tiny_run / run["files"]["json"]).read_text())
        assert min(e["start_time"] for e in entries) >= first + 0.5


def test_numbers_are_locusts_own(tiny_run: Path) -> None:
    results = json.loads((tiny_run / "results.json").read_text())
    report = (tiny_run / "report.md").read_text()
    rows = report_rows(report, "upstream")
    for run in results["runs"]:
        st = run["stats"]
        # Locust's final JSON for the run: the very same request and failure counts
        entries = json.loads((tiny_run / run["files"]["json"]).read_text())
        assert st["requests"] == sum(e["num_requests"] for e in entries) > 0
        assert st["failures"] == sum(e["num_failures"] for e in entries) == 0
        # Locust's _stats.csv lags by up to a second (see analysis/locust_stats.py) but agrees
        total = locust_csv_total(tiny_run / run["files"]["stats_csv"])
        assert 0 < int(total["Request Count"]) <= st["requests"]
        assert st["p50_ms"] == pytest.approx(float(total["50%"]), rel=0.25, abs=20)
        assert st["rps"] == pytest.approx(float(total["Requests/s"]), rel=0.3)
        # report.md shows results.json's numbers
        cells = rows[run["variant"]]
        assert cells[1] == fmt_rps(st["rps"])
        assert cells[2:5] == [fmt_ms(st[k]) for k in ("p50_ms", "p95_ms", "p99_ms")]
        assert cells[6] == fmt_rps(run["ceiling"]["rps"])
        assert run["server_peaks"]["polls_sent"] > 0
        # the blocked loop may leave every poll unanswered: uvloop keeps serving the users'
        # keep-alive connections ahead of the poll's (the verdict says so, tested below)
        assert run["server_peaks"]["polls_answered"] > 0 or run["variant"] == "blocking"
        assert run["generator_cpu"]["peak_pct_one_core"] is not None


def test_server_side_is_its_samples_own(tiny_run: Path) -> None:
    """API CPU, bystander and verdict in results.json and report.md are those of the samples
    results.json keeps (recomputed here, tests/server_checks.py)."""
    results = json.loads((tiny_run / "results.json").read_text())
    cells = report_rows((tiny_run / "report.md").read_text(), "upstream", table=1)
    for run in results["runs"]:
        check_run(run, cells[run["variant"]])
        # a blocked loop may answer no poll at all (see test_numbers_are_locusts_own)
        assert run["server"]["cpu_mean_pct"] is not None or run["variant"] == "blocking"
        assert len(run["server_samples"]) > run["server"]["polls"] > 0  # warm-up kept too
    runs = {r["variant"]: r for r in results["runs"]}
    # 10 users on 100 ms calls: async is far below its limits; blocking waits with its loop
    assert runs["async"]["server"]["verdict_kind"] == "none"
    assert runs["blocking"]["server"]["verdict_kind"] == "loop"
    assert runs["blocking"]["server"]["verdict"].startswith("event loop blocked")


def test_compare_reads_the_watchers_csvs(tiny_run: Path) -> None:
    """The locustfile's watcher (generator/server_watch.py) wrote each run's _server.csv and
    _bystander.csv: they feed results.json and report.md, and the bystander shows what every
    other request felt."""
    results = json.loads((tiny_run / "results.json").read_text())
    report = (tiny_run / "report.md").read_text()
    runs = {r["variant"]: r for r in results["runs"]}
    for run in runs.values():
        assert run["server"]["source"] == "locust"
        assert not any(w.startswith("Locust wrote no") for w in run["warnings"])
        assert {"server_csv", "bystander_csv"} <= set(run["files"])
        for kind in ("server_csv", "bystander_csv"):
            assert (tiny_run / run["files"][kind]).is_file()
        assert run["bystander"]["probes"] > 0 and len(run["bystander_samples"]) > 0
    assert "the Locust watcher's _server.csv" in report
    # a probe every 0.2 s over the ~4 s measured, each answered within milliseconds
    assert 10 <= runs["async"]["bystander"]["probes"] <= 30
    assert runs["async"]["bystander"]["p99_ms"] < 100
    # the article's warning: on a blocked loop every other request waits for the calls ahead
    # (10 users' 100 ms calls: about a second)
    assert runs["blocking"]["bystander"]["p50_ms"] > 300


def test_variants_differ_as_littles_law_says(tiny_run: Path) -> None:
    runs = {r["variant"]: r for r in json.loads((tiny_run / "results.json").read_text())["runs"]}
    async_, blocking = runs["async"], runs["blocking"]
    assert async_["ceiling"]["rps"] == pytest.approx(100)  # 10 users / 0.1 s
    assert blocking["ceiling"]["rps"] == pytest.approx(10)  # 1 loop / 0.1 s
    assert blocking["ceiling"]["why"] == "1 loop / 0.100 s"
    # generous: on any machine async serves several times what the blocked loop does
    assert async_["stats"]["rps"] > 3 * blocking["stats"]["rps"]
    assert 30 < blocking["pct_of_ceiling"] < 150
    assert async_["server_peaks"]["in_flight"] >= 1
    assert blocking["server"]["verdict_kind"] == "loop"  # whole calls block the loop
    # 10 users at 10 req/s: 1 s per response, and 4 s is less than 5 of those
    assert any(w.startswith("run too short") for w in blocking["warnings"])
    assert not any(w.startswith("run too short") for w in async_["warnings"])


def test_short_run_and_cpu_bound_generator_are_flagged(
    lab_apis: dict[str, str], tmp_path: Path
) -> None:
    # 2 s against 1.5 s responses; --cpu-warn-pct 0 makes any Locust CPU sample "too much",
    # through the very decision function compare uses.
    code = main(
        [
            "--scenarios", "upstream",
            "--variants", "async",
            "--users", "5",
            "--duration", "2s",
            "--warmup", "0",
            "--delay-ms", "1500",
            "--cpu-warn-pct", "0",
            "--targets", targets(lab_apis, "async"),
            "--out", str(tmp_path),
        ]
    )  # fmt: skip
    assert code == 0
    folder = only_dir(tmp_path)
    (run,) = json.loads((folder / "results.json").read_text())["runs"]
    warnings = run["warnings"]
    assert any(w.startswith("run too short: 2 s < 5 x the ") for w in warnings)
    assert any(w.startswith("load generator CPU-bound") for w in warnings)
    report = (folder / "report.md").read_text()
    assert "run too short" in report and "load generator CPU-bound" in report


def test_generator_cpu_decision() -> None:
    assert checks.generator_cpu_warning([]) is None
    assert checks.generator_cpu_warning([20.0, 45.0, 89.9]) is None
    assert checks.generator_cpu_warning([40.0, 95.0, 60.0]) is None  # one spike is not CPU-bound
    warning = checks.generator_cpu_warning([40.0, 95.0, 92.0, 91.0, 60.0])
    assert warning is not None and "95% of one core" in warning
    assert checks.generator_cpu_warning([10.0], threshold_pct=5) is not None


def test_short_run_decision() -> None:
    assert checks.short_run_warning(2, 1.5) is not None
    assert checks.short_run_warning(30, 1.0) is None  # 30 s >= 5 x 1 s
    assert checks.short_run_warning(30, 40.0) is not None  # blocking, 200 users x 200 ms
    assert checks.short_run_warning(30, None) is None  # no ceiling, no expectation
    # the tail counts too: a mean of 3.4 s, but an unfair queue made p95 32 s
    warning = checks.short_run_warning(30, 3.4, measured_p95_s=32.0)
    assert warning is not None and "measured p95 32.00 s" in warning
    assert checks.short_run_warning(30, 3.4, measured_p95_s=1.0) is None


def test_one_load_from_the_arguments() -> None:
    from loadtest.orchestrate.compare import parse_args

    args = parse_args(["--users", "7", "--duration", "1m", "--warmup", "2s", "--stop-timeout", "3"])
    load = Load.from_args(args)
    assert (load.users, load.spawn_rate, load.duration_s, load.warmup_s) == (7, 7.0, 60, 2)
    assert (load.stop_timeout_s, load.delay_ms, load.work) == (3, 200, 20)
    assert args.variants == list(NAMES)  # default: every variant of the registry


def test_cli_help_and_bad_names() -> None:
    cmd = [sys.executable, "-m", "loadtest.compare"]
    shown = subprocess.run([*cmd, "--help"], capture_output=True, text=True, check=True)
    for option in ("--scenarios", "--variants", "--duration", "--warmup", "--targets", "--out"):
        assert option in shown.stdout
    bad = subprocess.run([*cmd, "--scenarios", "nope"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown scenario(s) nope" in bad.stderr
