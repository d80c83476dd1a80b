"""Closed loop or open loop: how a run loaded its target, in the words every report uses."""

from __future__ import annotations

from loadtest.analysis.records import RunRecord

# The two sentences every report opens with (docs/loadtest.md says more).
CLOSED_VS_OPEN = (
    "Closed loop: each of N users sends its next request only when its previous answer has "
    "arrived, so a server that slows down also slows its own load, and the queue it would "
    "build never shows in the percentiles (coordinated omission). Open loop: requests start on "
    "a schedule whether or not earlier ones were answered, and each latency counts from the "
    "request's scheduled start, so a server that falls behind its arrivals shows its backlog."
)


def is_open(run: RunRecord) -> bool:
    return run.get("mode") == "open"


def level(run: RunRecord) -> float:
    """What a capacity step turned up: arrivals per second (open loop) or users (closed)."""
    rate = run.get("arrival_rate")
    return float(rate) if is_open(run) and rate else float(run["users"])


def level_text(run: RunRecord) -> str:
    """ "25 users", or "40 req/s arrivals" for an open-loop run."""
    if is_open(run):
        return f"{level(run):g} req/s arrivals"
    return f"{run['users']} users"


def load_text(run: RunRecord) -> str:
    """How the run loaded its target, in one phrase."""
    if is_open(run):
        return f"open loop, {level(run):g} req/s {run.get('arrivals') or 'poisson'} arrivals"
    return f"closed loop, {run['users']} users"


def run_label(run: RunRecord, paired: bool) -> str:
    """The run's row label in tables and charts: the variant, marked when paired runs of
    both modes sit in one table."""
    return f"{run['variant']} (open)" if paired and is_open(run) else run["variant"]
