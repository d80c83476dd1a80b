"""`python -m loadtest.capacity`: the search stops where the SLO is crossed (real runs)."""

import itertools
import json
import re
from pathlib import Path
from typing import Any

import pytest

from loadtest.analysis.report import fmt_ms, fmt_pair, fmt_small_ms
from loadtest.capacity import main  # the entry point's path, as `make capacity` runs it
from loadtest.orchestrate.capacity import summarize_search, verdict
from tests.server_checks import check_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.timeout(240)
def test_blocking_stops_early_and_async_goes_further(
    lab_apis: dict[str, str], tmp_path: Path
) -> None:
    # 100 ms calls and a 300 ms p95 SLO: the blocking variant serves one call at a time, so a
    # handful of users already waits past the SLO; async keeps them all in flight.
    spec = ",".join(f"{v}={lab_apis[v]}" for v in ("async", "blocking"))
    code = main(
        [
            "--variants", "async,blocking",
            "--delay-ms", "100",
            "--slo-ms", "300",
            "--steps", "1,2,5,10",
            "--step-duration", "2s",
            "--warmup", "1s",
            "--targets", spec,
            "--out", str(tmp_path),
        ]
    )  # fmt: skip
    assert code == 0
    (folder,) = tmp_path.iterdir()
    assert folder.name.endswith("-capacity")
    results = json.loads((folder / "results.json").read_text())
    found = {s["variant"]: s for s in results["searches"]}
    blocking, async_ = found["blocking"], found["async"]

    assert len(blocking["steps"]) <= 4  # 1, 2, 5 users at most before p95 > 300 ms
    assert blocking["stop_reason"].startswith("p95 ")
    assert not blocking["steps"][-1]["ok"]
    assert blocking["knee_users"] in (1, 2)
    # past the knee the blocked loop shows (a /runtime poll lagging or not answered at all)
    assert blocking["limit_users"] > blocking["knee_users"]
    assert blocking["limit_verdict"].startswith("event loop blocked")
    assert blocking["max_rps"] == pytest.approx(10, rel=0.5)  # 1 / 0.1 s

    assert async_["knee_users"] >= 10 > blocking["knee_users"]
    assert async_["max_rps"] > 3 * blocking["max_rps"]
    assert len(async_["steps"]) > len(blocking["steps"])

    chart = folder / results["charts"]["upstream"]
    assert chart.read_bytes().startswith(PNG_MAGIC)
    report = (folder / "report.md").read_text()
    assert f"| `blocking` | {blocking['max_rps']:.1f} | {blocking['knee_users']} |" in report
    assert blocking["stop_reason"] in report
    for step in blocking["steps"]:
        entries = json.loads((folder / step["files"]["json"]).read_text())
        assert step["stats"]["requests"] == sum(e["num_requests"] for e in entries)
    check_server_side(results, report)
    # every step's server side is the locustfile's watcher's: its CSVs, its bystander's p99
    rows = steps_table(report)
    for found in results["searches"]:
        for step in found["steps"]:
            assert step["server"]["source"] == "locust"
            assert {"server_csv", "bystander_csv"} <= set(step["files"])
            assert not any(w.startswith("Locust wrote no") for w in step["warnings"])
            assert step["bystander"]["probes"] > 0
            assert rows[found["variant"], step["users"]][7] != "n/a"
    # async keeps up at a few users: its bystander answers within milliseconds
    for step in async_["steps"]:
        if step["users"] <= 5:
            assert step["bystander"]["p99_ms"] < 100
            assert step["server"]["verdict"].startswith("none: below capacity")
    assert "the Locust watcher's _server.csv" in report


def steps_table(report: str) -> dict[tuple[str, int], list[str]]:
    """report.md's steps rows by (variant, users), as lists of cells."""
    rows = {}
    for line in report.split("Steps (", 1)[1].splitlines():
        if m := re.match(r"\| `(\w+)` \| (\d+) \|", line):
            rows[m.group(1), int(m.group(2))] = [c.strip() for c in line.strip("|").split("|")]
    return rows


def check_server_side(results: dict[str, Any], report: str) -> None:
    """Every step's API CPU, bystander p99 and verdict are its samples' own and in report.md;
    the knee's verdict says what limited it."""
    rows = steps_table(report)
    for found in results["searches"]:
        for step in found["steps"]:
            check_run(step, None)
            cells = rows[found["variant"], step["users"]]
            server = step["server"]
            cpu = fmt_ms(server["cpu_mean_pct"]), fmt_ms(server["cpu_peak_pct"])
            assert cells[6].split(" (workers ")[0] == fmt_pair(*cpu)
            assert cells[7] == fmt_small_ms(step["bystander"]["p99_ms"])
            assert cells[8].startswith(server["verdict"] or "n/a")
        knee = [s for s in found["steps"] if s["users"] == found["knee_users"]]
        if knee:
            assert found["knee_verdict"] == knee[0]["server"]["verdict"] is not None
        # what limits it: the step that failed the SLO, else the knee
        last = found["steps"][-1]
        limit = knee[0] if last["ok"] and knee else last
        assert (found["limit_verdict"], found["limit_users"]) == (
            limit["server"]["verdict"],
            limit["users"],
        )
        assert f"| {found['limit_verdict']} (at {found['limit_users']} users, " in report


def step(users: int, rps: float, p95: float, failure_pct: float = 0.0) -> dict[str, Any]:
    stats = {"requests": 100, "rps": rps, "p95_ms": p95, "failure_pct": failure_pct}
    server = {"verdict": f"verdict at {users} users"}
    return {
        "users": users,
        "stats": stats,
        "ceiling": {"rps": None, "why": "n/a"},
        "server": server,
    }


def test_verdict() -> None:
    assert verdict(step(10, 50, 200), slo_ms=500, max_failure_pct=1) is None
    assert verdict(step(10, 50, 600), 500, 1) == "p95 600 ms > SLO 500 ms at 10 users"
    assert verdict(step(10, 50, 100, failure_pct=2.5), 500, 1) == ("failures 2.5% > 1% at 10 users")
    empty = step(10, 0, 0) | {"stats": {"requests": 0, "rps": 0, "p95_ms": None}}
    assert verdict(empty, 500, 1) == "no request completed at 10 users"


def test_knee_is_the_sustainable_step_with_the_most_throughput() -> None:
    steps = [step(10, 50, 100), step(25, 120, 200), step(50, 118, 450), step(100, 90, 900)]
    for s in steps:
        s["ok"] = s["stats"]["p95_ms"] <= 500
    found = summarize_search("upstream", "sync", steps, "p95 900 ms > SLO 500 ms at 100 users")
    assert (found["knee_users"], found["max_rps"], found["knee_p95_ms"]) == (25, 120, 200)
    assert found["knee_verdict"] == "verdict at 25 users"
    # the step past the knee that failed the SLO shows what limits the variant
    assert (found["limit_verdict"], found["limit_users"]) == ("verdict at 100 users", 100)
    none = summarize_search("upstream", "blocking", steps[3:], "p95")
    assert none["knee_users"] is None and none["max_rps"] is None


def test_log_axis_labels_do_not_run_into_each_other() -> None:
    from loadtest.analysis.charts import _spaced_labels

    # a refined open-loop search: 700, 750 and 1050 sit too close to a rounder neighbour
    ticks = [5, 10, 25, 50, 100, 200, 300, 400, 600, 700, 750, 800, 1000, 1050, 1100, 1200]
    labels = _spaced_labels(ticks)
    shown = [t for t, label in zip(ticks, labels, strict=True) if label]
    assert all(b / a >= 1.45 for a, b in itertools.pairwise(shown)), shown
    assert {5, 10, 100, 1000} <= set(shown)  # the round ones win
    assert _spaced_labels([1, 2, 5, 10, 25]) == ["1", "2", "5", "10", "25"]
