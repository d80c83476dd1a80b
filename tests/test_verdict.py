"""The bottleneck verdict, over /runtime answers recorded under known loads
(tests/data/runtime_samples.json; rerun tests/data/record_runtime.py to record them again)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from loadtest.generator.verdict import decide

SAMPLES: dict[str, dict[str, Any]] = json.loads(
    (Path(__file__).parent / "data" / "runtime_samples.json").read_text()
)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_recorded_loads_get_the_expected_verdict(name: str) -> None:
    sample = SAMPLES[name]
    verdict = decide(
        sample["runtime"], generator_cpu_pct=20.0, poll_timeout_s=sample["poll_timeout_s"]
    )
    assert verdict.kind == sample["expected"], verdict.line


def test_threadpool_line_says_tokens_and_queue() -> None:
    line = decide(SAMPLES["sync-upstream-200"]["runtime"]).line
    assert line.startswith("threadpool: 40/40 tokens busy, ")
    waiting = int(line.split(", ")[1].split()[0])
    assert 100 <= waiting <= 160, line  # 200 users, 40 served: the rest wait for a token


def test_cpu_on_the_loop_names_the_lag_too() -> None:
    line = decide(SAMPLES["async-cpu-10"]["runtime"]).line
    assert line.startswith("API CPU: ") and "on the event loop (lag " in line, line


def test_a_cpu_bound_load_generator_overrides_everything() -> None:
    verdict = decide(SAMPLES["sync-upstream-200"]["runtime"], generator_cpu_pct=97.0)
    assert verdict.kind == "generator" and "97 %" in verdict.line


def test_no_answer_without_a_timeout_is_not_called_a_blocked_loop() -> None:
    assert decide(None).kind == "unknown"
    assert decide(None, poll_timeout_s=2.5).kind == "loop"


def test_idle_server_is_below_capacity() -> None:
    idle = {
        "loop_lag_ms": 0.0, "in_flight": 1, "threadpool": {"borrowed": 0, "total": 40},
        "db_pool": {"waiting": 0, "in_use": 0, "max": 20}, "process": {"cpu_pct": 1.0},
    }  # fmt: skip
    assert decide(idle).line == "none: below capacity (0 in flight, CPU 1 %)"


def test_cpu_in_threads_names_the_gil_not_the_loop() -> None:
    """`def` endpoints doing Python CPU work: 40 threads and the loop take turns on the GIL."""
    busy = {
        "loop_lag_ms": 149.0, "in_flight": 201, "threadpool": {"borrowed": 40, "total": 40},
        "process": {"cpu_pct": 95.0}, "db_pool": {"waiting": 0},
    }  # fmt: skip
    verdict = decide(busy)
    assert verdict.kind == "cpu"
    assert verdict.line == "API CPU: 95 % of one core, 40 threads sharing the GIL (loop lag 149 ms)"


def test_no_answer_is_judged_with_the_latest_answer() -> None:
    """A loop that computes and one that waits both leave /runtime unanswered: the server's
    latest answer (recorded samples) says which it was."""
    cpu_on_loop = SAMPLES["async-cpu-10"]["runtime"]
    waiting = SAMPLES["blocking-upstream-8"]["runtime"]
    computing = decide(None, poll_timeout_s=2.5, last_answer=cpu_on_loop)
    assert (
        computing.kind == "cpu"
        and "on the event loop (/runtime waited over 2.5 s" in computing.line
    )
    assert decide(None, poll_timeout_s=2.5, last_answer=waiting).kind == "loop"
    gil = {"process": {"cpu_pct": 98.0}, "threadpool": {"borrowed": 40, "total": 40}}
    assert "40 threads sharing the GIL" in decide(None, poll_timeout_s=2.5, last_answer=gil).line
    assert decide(None, last_answer=cpu_on_loop).kind == "unknown"  # refused: no timeout
