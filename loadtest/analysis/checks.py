"""Decide whether a run's result is believable: the decisions behind the per-run warnings.

compare and capacity call these very functions, so what the tests force is what users see.
"""

from __future__ import annotations

from collections.abc import Sequence

from loadtest.analysis.records import OpenLoopSummary

# Locust's own alarm level: above it the generator, not the server, sets the pace.
CPU_WARN_PCT = 90.0
# Requests still in flight when the run stops are recorded only if they finish within
# --stop-timeout; a run must last several response times so that they are a small minority.
SHORT_RUN_FACTOR = 5.0
# Open loop: the generator started requests this late after their schedule (p99): it could not
# keep the schedule, and the latencies include its own delay.
SEND_LAG_WARN_MS = 50.0
# ... and when even its median request starts this late, it is behind for good (not a moment
# without CPU on a shared machine): capacity stops pushing harder.
SEND_LAG_BEHIND_MS = 20.0


def generator_cpu_warning(
    per_process_pct: Sequence[float], threshold_pct: float = CPU_WARN_PCT
) -> str | None:
    """Warn when one Locust process used more than `threshold_pct` of a core.

    `per_process_pct` holds, for each sample, the busiest Locust process's CPU in % of one
    core: a Locust process is single-threaded (gevent), so one core is its ceiling. It takes
    three samples at or above the threshold (sustained, not one start-up spike) to warn."""
    if not per_process_pct:
        return None
    ranked = sorted(per_process_pct, reverse=True)
    peak, sustained = ranked[0], ranked[min(2, len(ranked) - 1)]
    if sustained < threshold_pct:
        return None
    mean = sum(per_process_pct) / len(per_process_pct)
    return (
        f"load generator CPU-bound: a Locust process reached {peak:.0f}% of one core "
        f"(mean {mean:.0f}%, threshold {threshold_pct:g}%); latency includes Locust's own "
        "queueing, use fewer users or more Locust processes"
    )


def short_run_warning(
    duration_s: float,
    expected_latency_s: float | None,
    measured_p95_s: float | None = None,
    factor: float = SHORT_RUN_FACTOR,
) -> str | None:
    """Warn when the run lasts fewer than `factor` response times: the expected one (Little's
    law: users / ceiling) or the measured p95, whichever is longer (an unfair queue can make
    the tail far longer than the mean)."""
    candidates = [
        (latency, name)
        for latency, name in (
            (expected_latency_s, "expected latency"),
            (measured_p95_s, "measured p95"),
        )
        if latency is not None and latency > 0
    ]
    if not candidates:
        return None
    latency, name = max(candidates)
    if duration_s >= factor * latency:
        return None
    return (
        f"run too short: {duration_s:g} s < {factor:g} x the {name} {latency:.2f} s; "
        "the slowest requests are still in flight at the end and Locust never records them, "
        "so percentiles look better than they are"
    )


def runtime_polls_warning(answered: int, sent: int) -> str | None:
    """Warn when the target's /runtime went mostly unanswered: its peaks then understate."""
    if sent == 0 or answered >= sent / 2:
        return None
    return (
        f"/runtime answered {answered} of {sent} polls in time (the event loop was busy): "
        "server-side peaks understate"
    )


def failures_warning(failure_pct: float | None, limit_pct: float = 1.0) -> str | None:
    if failure_pct is None or failure_pct <= limit_pct:
        return None
    return f"{failure_pct:.1f}% of requests failed (see the run's _failures.csv)"


def open_loop_warnings(books: OpenLoopSummary | None) -> list[str]:
    """What an open-loop run's own accounting says about it: arrivals dropped at the in-flight
    cap, requests left unanswered at the end, a generator that fell behind its schedule."""
    if books is None:
        return []
    found = []
    if books["dropped"]:
        found.append(
            f"{books['dropped']} of {books['scheduled']} arrivals dropped: "
            f"{books['max_in_flight']} requests were already in flight (--max-in-flight); "
            "they count as failures, "
            "without a latency, so the percentiles understate"
        )
    if books["unfinished"]:
        found.append(
            f"{books['unfinished']} requests unanswered when the run stopped: failures, recorded "
            "with the time they had waited"
        )
    lag = books["send_lag_p99_ms"]
    if lag is not None and lag > SEND_LAG_WARN_MS:
        found.append(
            f"load generator behind its schedule: p99 {lag:.0f} ms between a request's scheduled "
            f"and actual start (threshold {SEND_LAG_WARN_MS:g} ms); the latencies include it"
        )
    return found
