"""What limits throughput right now, in one line a trainee understands: rules over /runtime.

Input is one /runtime answer (the server's own numbers) plus the load generator's CPU; the rules
are tried in order and the first that holds is the verdict. Thresholds are deliberately coarse:
the verdict names the bottleneck, the numbers beside it give the detail.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

# Locust above this share of one core: its own numbers are no longer about the server.
GENERATOR_CPU_PCT = 90.0
# One process running Python holds the GIL: ~100 % of one core is all it gets.
API_CPU_PCT = 85.0
# The lag probe sleeps 50 ms; a busy but healthy loop is late by a few ms to a few tens.
LOOP_BLOCKED_MS = 100.0
# A blocked loop that computes (CPU in async def) vs one that waits (a blocking call): the
# process's CPU over the last second tells them apart.
LOOP_CPU_PCT = 50.0

Kind = Literal["generator", "cpu", "loop", "threadpool", "db-pool", "executor", "none", "unknown"]


@dataclass(frozen=True)
class Verdict:
    kind: Kind
    line: str


def decide(
    runtime: Mapping[str, Any] | None,
    generator_cpu_pct: float | None = None,
    poll_timeout_s: float | None = None,
    last_answer: Mapping[str, Any] | None = None,
) -> Verdict:
    """The bottleneck that one /runtime sample and Locust's CPU show. `runtime` None: the poll
    got no answer, within `poll_timeout_s` when given (else the server refused or failed);
    `last_answer`, the server's latest answer (a few seconds old at most), then tells a loop
    busy computing from one that waits."""
    if generator_cpu_pct is not None and generator_cpu_pct >= GENERATOR_CPU_PCT:
        return Verdict(
            "generator",
            f"load generator CPU-bound: Locust at {generator_cpu_pct:.0f} % of a core, "
            "the numbers describe Locust",
        )
    if runtime is None:
        if poll_timeout_s is None:
            return Verdict("unknown", "no answer from /runtime: is the server up?")
        # /runtime is served by the same loop as the requests: no answer in time means the loop
        # has been blocked at least that long (or a queue of blocking requests is ahead of it).
        waited = f"/runtime waited over {poll_timeout_s:g} s for the loop"
        last_cpu = _num(last_answer or {}, "process", "cpu_pct")
        if last_answer is not None and last_cpu >= LOOP_CPU_PCT:
            threads = _num(last_answer, "threadpool", "borrowed")
            where = f"{threads:.0f} threads sharing the GIL" if threads > 0 else "on the event loop"
            return Verdict("cpu", f"API CPU: {last_cpu:.0f} % of one core, {where} ({waited})")
        return Verdict("loop", f"event loop blocked: {waited}")
    lag = _num(runtime, "loop_lag_ms")
    cpu = _num(runtime, "process", "cpu_pct")
    children_cpu = _num(runtime, "process", "children_cpu_pct")
    borrowed, total = _num(runtime, "threadpool", "borrowed"), _num(runtime, "threadpool", "total")
    in_flight = max(0.0, _num(runtime, "in_flight") - 1)  # less the /runtime poll itself
    db_waiting = _num(runtime, "db_pool", "waiting")
    db_in_use, db_max = _num(runtime, "db_pool", "in_use"), _num(runtime, "db_pool", "max")
    executor = runtime.get("executor") or {}
    queued, workers = _num(executor, "queued"), _num(executor, "workers")

    if lag >= LOOP_BLOCKED_MS:
        if cpu >= LOOP_CPU_PCT and borrowed > 0:
            # CPU work in threads: the loop thread waits its turn for the GIL like the others
            return Verdict(
                "cpu",
                f"API CPU: {cpu:.0f} % of one core, {borrowed:.0f} threads sharing the GIL "
                f"(loop lag {lag:.0f} ms)",
            )
        if cpu >= LOOP_CPU_PCT:
            return Verdict(
                "cpu", f"API CPU: {cpu:.0f} % of one core, on the event loop (lag {lag:.0f} ms)"
            )
        return Verdict(
            "loop",
            f"event loop blocked: lag {lag:.0f} ms at {cpu:.0f} % CPU "
            "(a blocking call in async def)",
        )
    if cpu >= API_CPU_PCT:
        return Verdict("cpu", f"API CPU: {cpu:.0f} % of one core")
    if total and borrowed >= total:
        waiting = max(0.0, in_flight - borrowed)
        return Verdict(
            "threadpool",
            f"threadpool: {borrowed:.0f}/{total:.0f} tokens busy, "
            f"{waiting:.0f} requests waiting for a token",
        )
    if db_waiting > 0:
        return Verdict(
            "db-pool",
            f"DB pool: {db_in_use:.0f}/{db_max:.0f} connections busy, {db_waiting:.0f} waiting",
        )
    if queued > 0:
        return Verdict(
            "executor",
            f"CPU executor: {workers:.0f} workers busy ({children_cpu:.0f} % CPU), "
            f"{queued:.0f} jobs queued",
        )
    return Verdict("none", f"none: below capacity ({in_flight:.0f} in flight, CPU {cpu:.0f} %)")


def _num(data: Mapping[str, Any], *path: str) -> float:
    value: Any = data
    for part in path:
        value = value.get(part) if isinstance(value, Mapping) else None
    return float(value) if isinstance(value, int | float) else 0.0
