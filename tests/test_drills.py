"""Fault drills: the timeline and rule logic, the durability check on a real database, the
admission-control knob, and short end-to-end drills on real processes (PostgreSQL, upstream,
an API, Locust)."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psycopg2
import pytest

from loadtest.analysis.drill_rules import (
    Request,
    Window,
    durability,
    judge,
    recovery_s,
    timeline,
)
from loadtest.orchestrate import drill
from loadtest.orchestrate.labs import fetch_orders
from tests.conftest import StartApi

T0 = 1_000_000.0


def req(start: float, ms: float, status: int = 200, name: str = "/items/[id]") -> Request:
    return Request(T0 + start, T0 + start + ms / 1000, name, status, ms)


def steady(until: float, every: float = 0.1, ms: float = 20) -> list[Request]:
    return [req(i * every, ms) for i in range(int(until / every))]


def test_timeline_counts_codes_and_percentiles_per_second() -> None:
    rows = [req(0.1, 10), req(0.2, 30), req(0.3, 20, 503), req(1.5, 100, 0)]
    seconds = timeline(rows, T0)
    assert [s.t for s in seconds] == [0, 1]
    assert seconds[0].codes == {"200": 2, "503": 1}
    assert seconds[1].codes == {"conn": 1}
    assert seconds[0].p50_ms == 20 and seconds[0].p99_ms == 30


def test_recovery_is_the_first_clean_normal_second_after_the_fault() -> None:
    rows = [*steady(10), req(5.5, 50, 503), req(5.9, 900)]  # an error, then one slow second
    seconds = timeline(rows, T0)
    assert recovery_s(seconds, fault_end_t=5, normal_p99_ms=20) == 2
    assert recovery_s(seconds, fault_end_t=12, normal_p99_ms=20) is None


def test_judge_separates_fault_errors_from_outside_and_bystanders() -> None:
    window = Window(T0 + 3, T0 + 4, allowance_s=1)
    rows = [*steady(10), req(3.5, 5, 503), req(4.8, 5, 503), req(7, 5, 503)]
    rows.append(req(3.6, 5, 502, name="/io/upstream"))
    v = judge("x", rows, window, 1000, ("/items/[id]",), 20, recovery_limit_s=5)
    assert (v.fault_errors, v.outside_errors, v.untouched_fault_errors) == (3, 1, 1)
    assert v.fault_codes == {"503": 2, "502": 1}
    assert len(v.broken) == 2  # the error at 7 s; the 502 on a request the fault cannot reach
    slow = judge("x", [*steady(10), req(5, 2000)], window, 1000, None, 20, 5)
    assert any("longest" in b for b in slow.broken)


def _unanswered(start: float, cause: str) -> Request:
    error = f"CatchResponseError: HTTP 0 {cause}: closed"
    return Request(T0 + start, T0 + 1.0, "/io/upstream", 0, (1.0 - start) * 1000, error=error)


@pytest.mark.parametrize(("exit_code", "drain_s", "cut"), [(0, 0.5, 0), (0, 40.0, 2), (1, 0.5, 2)])
def test_sigterm_unanswered_requests_count_as_unread_only_after_a_clean_drain(
    exit_code: int, drain_s: float, cut: int
) -> None:
    """uvicorn answers every request it read before it exits cleanly: so an in-flight request
    closed unanswered was never read (queued behind a blocked loop). After a forced or failed
    exit the same request may have been cut, and the rule says so."""
    closed, refused = "HTTPConnectionClosed", "ConnectionRefusedError"
    requests = [req(0.2, 100), _unanswered(0.4, closed), _unanswered(0.5, refused)]
    measured = {
        "signalled": T0 + 0.8,
        "exit_code": exit_code,
        "drain_s": drain_s,
        "refused_at": T0 + 0.9,
        "exited_at": T0 + 0.9 + drain_s,
    }
    window = Window(T0 + 0.8, T0 + 2, 2)
    v = judge("x", requests, window, 1e9, None, 100, 10)
    drill._extra_rules(drill.DRILLS["sigterm"], v, requests, measured, window, [], False, 30)
    assert v.extra["  read (accepted), failed (cut)"] == cut
    assert v.extra["  never read by the server, closed unanswered"] == 2 - cut
    assert any("cut by the shutdown" in b for b in v.broken) == bool(cut)


def test_sigterm_fault_ends_at_the_fresh_process_first_answer() -> None:
    measured = {"signalled": T0 + 1, "exited_at": T0 + 1.5}
    old = req(0.5, 800)  # answered by the draining process
    fresh = req(2.0, 50)
    refused = _unanswered(1.6, "ConnectionRefusedError")
    assert drill._fresh_answer([old, refused, fresh], measured, T0 + 9) == fresh.end
    assert drill._fresh_answer([old, refused], measured, T0 + 9) == T0 + 9


def test_overload_without_admission_control_is_measured_against_littles_law() -> None:
    answered = [req(i * 0.1, 100) for i in range(100)]  # 10 answers/s over 10 s
    queue = drill._queue_bound(answered, T0, T0 + 10, users=200)
    assert queue["longest_ms"] == pytest.approx(2 * 200 / 10 * 1000, rel=0.02)
    fast = [req(i * 0.01, 10) for i in range(1000)]  # 100/s: the queue's mean wait is 2 s
    assert drill._queue_bound(fast, T0, T0 + 10, users=200)["longest_ms"] == pytest.approx(
        4000, rel=0.02
    )


def test_no_bound_means_no_broken_rule_for_the_longest_response() -> None:
    slow = [*steady(5), req(5, 90_000)]
    window = Window(T0 + 1, T0 + 2, 1)
    unbounded = judge("x", slow, window, float("inf"), None, 100, 10)
    assert unbounded.longest_bound_ms is None
    assert not any("longest" in b for b in unbounded.broken)
    bounded = judge("x", slow, window, 30_000, None, 100, 10)
    assert any("longest response 90000 ms > bound 30000 ms" in b for b in bounded.broken)


def test_durability_on_a_real_database(database_url: str) -> None:
    note = "unit-durability"
    conn = psycopg2.connect(database_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        ids = []
        for n in ("a-1", "a-2", "a-3", "a-3", "a-4", "a-5"):
            cur.execute(
                "insert into orders (item_id, quantity, note) values (1, 1, %s) returning id",
                (f"{note}-{n}",),
            )
            ids.append(cur.fetchone()[0])
    conn.close()

    def write(n: str, status: int, order_id: int | None) -> Request:
        return Request(T0, T0 + 0.01, "/orders", status, 10, order_id, f"{note}-{n}")

    requests = [
        write("a-1", 201, ids[0]),
        write("a-2", 201, ids[1]),
        write("a-3", 201, ids[2]),  # the note has two rows: a duplicate
        write("a-4", 503, None),  # a definite failure whose row exists
        write("a-5", 0, None),  # no answer: its row may exist
        write("a-6", 201, 10**9),  # acknowledged, never stored
    ]
    d = durability(requests, fetch_orders(database_url, note))
    assert d.counts() == {
        "acknowledged": 4, "present": 3, "missing": 1, "duplicates": 1,
        "extra_definite": 1, "extra_unknown": 1, "rows": 6,
    }  # fmt: skip
    assert not d.ok


@pytest.mark.parametrize("server", ["uvicorn", "gunicorn"])
def test_limit_concurrency_sheds_with_503(start_api: StartApi, server: str) -> None:
    base = start_api("async", API_LIMIT_CONCURRENCY=2, API_SERVER=server)

    def slow(_: int) -> int:
        with httpx.Client(base_url=base, timeout=10) as client:
            return client.get("/io/upstream?delay_ms=1500").status_code

    # One request first, then three while it waits on the upstream: uvicorn counts open
    # connections too, so four opened at once could all find the limit reached (seen in CI).
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(slow, 0)
        time.sleep(0.5)
        codes = sorted([*pool.map(slow, range(3)), first.result()])
    assert 503 in codes and 200 in codes, codes


def _drill(tmp_path: Path, *argv: str) -> dict[str, object]:
    args = ["--users", "6", "--fault-at", "3", "--after", "6", "--out", str(tmp_path), *argv]
    code = drill.main(args)
    (out,) = tmp_path.glob("*-drill-*")
    result: dict[str, object] = json.loads((out / "results.json").read_text())
    assert (out / "report.md").exists()
    for v in result["variants"]:  # type: ignore[attr-defined]
        assert (out / v["chart"]).stat().st_size > 10_000
    assert code == 0, (out / "report.md").read_text()
    return result


def test_db_restart_drill_async(tmp_path: Path) -> None:
    (v,) = _drill(tmp_path, "db-restart", "--variants", "async")["variants"]  # type: ignore[misc]
    assert v["outside_errors"] == 0 and v["recovery_s"] is not None
    assert v["durability"]["missing"] == 0 and v["durability"]["acknowledged"] > 50


def test_sigterm_drill_sync(tmp_path: Path) -> None:
    (v,) = _drill(tmp_path, "sigterm", "--variants", "sync")["variants"]  # type: ignore[misc]
    assert v["extra"]["exit code"] == 0
    assert v["extra"]["  read (accepted), failed (cut)"] == 0
    assert v["extra"]["port refused after SIGTERM (s)"] is not None


def test_upstream_down_drill_async(tmp_path: Path) -> None:
    result = _drill(tmp_path, "upstream-down", "--variants", "async", "--fault-s", "3")
    (v,) = result["variants"]  # type: ignore[index]
    assert v["fault_codes"].get("502", 0) > 0
    assert v["untouched_fault_errors"] == 0


@pytest.mark.parametrize(
    ("error", "ms", "never_accepted"),
    [
        ("HTTP 0 ConnectionRefusedError: [Errno 111] Connection refused", 1, True),
        ("HTTP 0 OSError: [Errno 113] No route to host", 14_000, True),  # compose, no container
        ("HTTP 0 RetriesExceeded: URL x: 0, original=timed out", 3_020, True),  # connect timeout
        ("HTTP 0 RetriesExceeded: URL x: 0, original=timed out", 60_000, False),  # read timeout
        ("HTTP 0 ChunkedEncodingError: cut", 50, False),
    ],
)
def test_what_counts_as_never_accepted(error: str, ms: float, never_accepted: bool) -> None:
    r = Request(T0, T0 + ms / 1000, "/items/[id]", 0, ms, error=f"CatchResponseError: {error}")
    assert drill._not_accepted(r) is never_accepted
