"""Judge the target's side of one run over its measured window: API CPU, bystander p50/p99, the
run's bottleneck verdict and the /runtime peaks, from the samples results.json keeps.

Pure functions over records (analysis/records.py): the samples come from the Locust watcher's
CSVs (analysis/server_csv.py); a run without them has none, and its summaries are empty.
Tests recompute these numbers from results.json with the same rules:
- the window is Locust's measured span, started_at <= wall <= ended_at (the warm-up is before);
- percentiles are nearest-rank (the ceil(q * n)-th smallest value), the bystander's over the
  probes answered or still waiting at a timeout or at the stop (their wait so far);
- the run's verdict is the most frequent kind among the window's polls (ties: the earlier rule
  in generator/verdict.py), with the line of the median poll of that kind by the number it names.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any, Final, TypeVar, get_args

from loadtest.analysis.records import (
    BystanderSample,
    BystanderSummary,
    CpuSample,
    ServerPeaks,
    ServerSample,
    ServerSummary,
)
from loadtest.generator.verdict import Kind, decide

# Where a run's server samples came from (ServerSummary["source"]).
SOURCES: Final = {
    "locust": "the Locust watcher's _server.csv (one /runtime poll a second)",
    "none": "none (Locust wrote no _server.csv)",
}
# verdict.decide's rules in order: a tie between kinds goes to the earlier rule.
KIND_ORDER: Final = get_args(Kind)
# The number each verdict line names: its median poll is the run's representative line.
_KEY: Final[dict[str, str]] = {
    "generator": "generator_cpu_pct",
    "cpu": "cpu_pct",
    "loop": "loop_lag_ms",
    "threadpool": "in_flight",
    "db-pool": "db_waiting",
    "executor": "executor_queued",
    "none": "in_flight",
}
# A probe that failed with one of these errors waited that long for an answer: its latency (a
# lower bound) counts in the percentiles, as in the watcher's own (its Server tab). Other errors
# (a refused connection) fail fast and say nothing about waiting.
WAITED_ERRORS: Final = ("timeout", "unfinished at stop")
# A Locust CPU sample this close (s) to a poll stands for Locust's CPU at that poll.
_CPU_MATCH_S = 1.0

T = TypeVar("T", ServerSample, BystanderSample, CpuSample)


def in_window(samples: Sequence[T], start: float | None, end: float | None) -> list[T]:
    """The samples taken within Locust's measured span; none when the run counted nothing."""
    if start is None or end is None:
        return []
    return [s for s in samples if start <= s["wall"] <= end]


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest rank: the smallest value with at least q of all values at or below it."""
    if not values:
        return None
    ranked = sorted(values)
    return ranked[max(0, math.ceil(q * len(ranked)) - 1)]


def bystander_summary(window: Sequence[BystanderSample]) -> BystanderSummary:
    """Percentiles over the probes that were answered or waited (WAITED_ERRORS); failures are
    the probes without a 2xx/3xx answer."""
    latencies = [v for s in window if (v := s["latency_ms"]) is not None and probe_waited(s)]
    return BystanderSummary(
        probes=len(window),
        failures=sum(1 for s in window if not probe_ok(s)),
        p50_ms=percentile(latencies, 0.50),
        p99_ms=percentile(latencies, 0.99),
        max_ms=max(latencies, default=None),
    )


def probe_waited(sample: BystanderSample) -> bool:
    return sample["status"] is not None or sample["error"] in WAITED_ERRORS


def probe_ok(sample: BystanderSample) -> bool:
    status = sample["status"]
    return sample["error"] is None and status is not None and 200 <= status < 400


def verdicts(
    window: Sequence[ServerSample], cpu_samples: Sequence[CpuSample] = ()
) -> list[tuple[ServerSample, str, str]]:
    """(sample, kind, line) of every poll that has a verdict. A poll taken without Locust's CPU
    (generator_cpu_pct empty) gets it from `cpu_samples` (compare's CpuSampler): the generator
    rule comes first in verdict.decide and needs nothing else, so it can be applied afterwards."""
    judged: list[tuple[ServerSample, str, str]] = []
    for s in window:
        if s["generator_cpu_pct"] is None:
            cpu = _nearest_cpu(cpu_samples, s["wall"])
            over = decide(None, cpu) if cpu is not None else None
            if over is not None and over.kind == "generator":
                judged.append((s, over.kind, over.line))
                continue
        if s["verdict_kind"] and s["verdict"]:
            judged.append((s, s["verdict_kind"], s["verdict"]))
    return judged


def server_summary(
    window: Sequence[ServerSample], source: str, cpu_samples: Sequence[CpuSample] = ()
) -> ServerSummary:
    """API CPU and the run's verdict over the window's polls (see the module's rules)."""
    cpu = [v for s in window if (v := s["cpu_pct"]) is not None]
    children = [v for s in window if (v := s["children_cpu_pct"]) is not None]
    rss = [v for s in window if (v := s["rss_mb"]) is not None]
    judged = verdicts(window, cpu_samples)
    counts = Counter(kind for _, kind, _ in judged)
    kind, line, polls = _run_verdict(judged, counts)
    return ServerSummary(
        source=source,
        polls=len(window),
        answered=sum(1 for s in window if s["ok"]),
        timed_out=sum(1 for s in window if s["timed_out"]),
        cpu_mean_pct=_mean(cpu),
        cpu_peak_pct=max(cpu, default=None),
        children_cpu_mean_pct=_mean(children),
        children_cpu_peak_pct=max(children, default=None),
        rss_peak_mb=max(rss, default=None),
        verdict_kind=kind,
        verdict=line,
        verdict_polls=polls,
        verdict_counts=dict(counts.most_common()),
    )


def _run_verdict(
    judged: list[tuple[ServerSample, str, str]], counts: Counter[str]
) -> tuple[str | None, str | None, int]:
    if not counts:
        return None, None, 0

    def rank(kind: str) -> tuple[int, int]:
        order = KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER)
        return (-counts[kind], order)

    kind = min(counts, key=rank)
    mine = [(s, line) for s, k, line in judged if k == kind]
    key = _KEY.get(kind)

    def value(item: tuple[ServerSample, str]) -> float:
        got: Any = item[0].get(key) if key else None
        return float(got) if isinstance(got, int | float) else math.inf  # no answer: the worst

    ordered = sorted(mine, key=value)  # stable: equal values stay in time order
    return kind, ordered[(len(ordered) - 1) // 2][1], len(mine)


def peaks(window: Sequence[ServerSample]) -> ServerPeaks:
    """The highest of each /runtime field over the window's answered polls (a poll /runtime did
    not answer in time has no values: a blocked loop shows in the verdict, not here)."""
    ok = [s for s in window if s["ok"]]

    def peak(key: str) -> float | None:
        values = [v for s in ok if isinstance(v := s.get(key), int | float)]
        return max(values, default=None)

    return ServerPeaks(
        loop_lag_ms=peak("loop_lag_ms"),
        threadpool_borrowed=peak("threadpool_borrowed"),
        db_pool_waiting=peak("db_waiting"),
        in_flight=peak("in_flight"),
        polls_sent=len(window),
        polls_answered=len(ok),
    )


def _nearest_cpu(cpu_samples: Sequence[CpuSample], wall: float) -> float | None:
    near = [s for s in cpu_samples if abs(s["wall"] - wall) <= _CPU_MATCH_S]
    if not near:
        return None
    return min(near, key=lambda s: abs(s["wall"] - wall))["busiest_pct"]


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 1) if values else None
