"""The records that cross modules and land in results.json, typed (plain dicts at run time).

TypedDicts rather than dataclasses: results.json is these very dicts, and report.md is rendered
from results.json's data, so the types describe the file as much as the code.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

from loadtest.analysis.machine import Machine


class Stats(TypedDict):
    """A run's totals, as Locust's "Aggregated" row (analysis/locust_stats.py)."""

    requests: int
    failures: int
    failure_pct: float | None
    rps: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    avg_ms: float | None
    max_ms: float | None
    started_at: float | None  # epoch s of the first request
    ended_at: float | None  # epoch s of the last request


class HistoryRow(TypedDict):
    """One "Aggregated" row of Locust's _stats_history.csv; None where Locust wrote N/A."""

    t: float  # seconds since the first row
    wall: NotRequired[float]  # epoch s (Locust's Timestamp)
    users: float | None
    rps: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    requests: float | None


class ServerSample(TypedDict):
    """One /runtime poll of the loaded target, in the columns of the Locust watcher's
    PREFIX_server.csv (analysis/server_csv.py). None where /runtime gave nothing (no answer,
    or a field this server does not report)."""

    wall: float  # epoch s
    t: float  # seconds since polling started
    ok: bool  # /runtime answered
    timed_out: bool  # no answer within the poll's timeout
    poll_ms: float | None
    loop_lag_ms: float | None
    threadpool_borrowed: float | None
    threadpool_total: float | None
    db_in_use: float | None
    db_waiting: float | None
    db_max: float | None
    in_flight: float | None  # without the poll itself
    executor_queued: float | None
    cpu_pct: float | None  # API process, % of one core over the last second
    children_cpu_pct: float | None  # its CPU workers (offload's process pool)
    rss_mb: float | None
    threads: float | None
    generator_cpu_pct: float | None  # Locust's busiest process, when the poller knew it
    verdict_kind: str | None  # generator/verdict.py, for this poll
    verdict: str | None


class BystanderSample(TypedDict):
    """One GET /healthz on the loaded target while it is loaded (PREFIX_bystander.csv)."""

    wall: float  # epoch s
    t: float
    latency_ms: float | None
    status: int | None
    error: str | None  # filled when the probe failed or timed out


class ServerSummary(TypedDict):
    """The target's side of one run, over the measured window (analysis/server_side.py)."""

    source: str  # where the samples came from (server_side.SOURCES)
    polls: int  # /runtime polls in the window
    answered: int
    timed_out: int
    cpu_mean_pct: float | None  # API process, % of one core
    cpu_peak_pct: float | None
    children_cpu_mean_pct: float | None  # its CPU workers; None: no sample
    children_cpu_peak_pct: float | None
    rss_peak_mb: float | None
    verdict_kind: str | None  # the most frequent kind among the window's polls
    verdict: str | None  # the line of a representative poll of that kind
    verdict_polls: int  # polls with that kind
    verdict_counts: dict[str, int]  # kind -> polls


class BystanderSummary(TypedDict):
    """What every other request felt: the /healthz probes of the measured window."""

    probes: int
    failures: int
    p50_ms: float | None  # nearest rank, over the probes answered or waited (server_side.py)
    p99_ms: float | None
    max_ms: float | None


class ServerPeaks(TypedDict):
    """The highest of each /runtime field over the measured window's answered polls, and how
    many polls were sent and answered."""

    loop_lag_ms: float | None
    threadpool_borrowed: float | None
    db_pool_waiting: float | None
    in_flight: float | None
    polls_sent: int
    polls_answered: int


class CpuSample(TypedDict):
    """CPU of the Locust process tree at one poll, in % of one core (psutil's convention)."""

    total_pct: float
    busiest_pct: float
    machine_pct: float
    processes: int
    t: float
    wall: float


class CpuSummary(TypedDict):
    """Locust's CPU over the measured window; None (and no totals) when nothing was sampled."""

    peak_pct_one_core: float | None
    mean_pct_one_core: float | None
    peak_pct_total: NotRequired[float]
    peak_pct_machine: float | None
    processes: NotRequired[int]


class CeilingRecord(TypedDict):
    rps: float | None
    why: str
    expected_latency_s: float | None
    cpu_unit_ms: float


class OpenLoopSummary(TypedDict):
    """An open-loop run's arrivals over the measured window, from the Locust process's own
    accounting (PREFIX_arrivals.json, generator/open_loop.py)."""

    arrival_rate: float  # configured, per second
    measured_rate: float | None  # the schedule's arrivals per second, first to last
    arrivals: str  # "poisson" or "fixed"
    max_in_flight: int
    users: int
    scheduled: int  # arrivals due
    sent: int  # requests started (scheduled - dropped)
    dropped: int  # the in-flight cap was full: failures without latency
    completed: int  # answered (success or not) and recorded
    unfinished: int  # still unanswered at the end: failures, with the time waited so far
    peak_in_flight: int
    send_lag_p50_ms: float | None  # how late the generator started requests after schedule
    send_lag_p99_ms: float | None
    send_lag_max_ms: float | None


class RunRecord(TypedDict):
    """One measured run (orchestrate/measure.py): compare's runs, capacity's steps."""

    scenario: str
    variant: str
    url: str
    user_class: str
    mode: str  # "closed": `users` users, each waits for its answer; "open": `arrival_rate`
    users: int
    arrival_rate: float | None  # open loop: configured arrivals per second
    arrivals: str | None  # open loop: "poisson" or "fixed"
    max_in_flight: int | None
    open_loop: OpenLoopSummary | None  # None: closed loop (or Locust wrote no accounting)
    spawn_rate: float
    duration_s: int
    warmup_s: int
    delay_ms: int
    work: int
    command: str
    exit_code: int | None
    timed_out: bool
    wall_s: float
    stats: Stats
    ceiling: CeilingRecord
    pct_of_ceiling: float | None
    server_peaks: ServerPeaks
    server: ServerSummary
    bystander: BystanderSummary
    generator_cpu: CpuSummary
    locust_warned_cpu: bool
    files: dict[str, str]  # kind -> path (relative to the results folder once written)
    history: list[HistoryRow]
    server_samples: list[ServerSample]  # every poll, warm-up included
    bystander_samples: list[BystanderSample]  # every probe, warm-up included
    cpu_samples: list[CpuSample]
    generator_cpu_bound: bool
    warnings: list[str]
    ok: NotRequired[bool]  # capacity: within the SLO


class SearchRecord(TypedDict):
    """One capacity search: a scenario on a variant, step by step up to the knee."""

    scenario: str
    variant: str
    steps: list[RunRecord]
    stop_reason: str
    mode: str  # "closed": steps of users; "open": steps of arrival rates
    knee_users: int | None
    knee_rate: float | None  # open loop: the arrival rate at the knee
    max_rps: float | None
    knee_p95_ms: float | None
    knee_verdict: str | None  # the knee step's server verdict
    # What limits the variant: the verdict of the step that ended the search by failing its SLO,
    # else the knee's (the search ran out of steps or the generator), and at how many users.
    limit_verdict: str | None
    limit_users: int | None
    limit_rate: float | None  # open loop: the arrival rate of that step
    ceiling_at_knee: CeilingRecord | None


class TargetInfo(TypedDict):
    """A target as results.json records it."""

    url: str
    settings: dict[str, Any]  # its /runtime "settings", as the API sent them
    runtime: NotRequired[dict[str, Any]]  # compare: the whole /runtime answer
    cpu_unit_ms: NotRequired[dict[str, float]]  # compare: measured per CPU kind


class Results(TypedDict):
    """What compare and capacity both write to results.json (and report.md is made from)."""

    kind: str
    command: str
    started: str  # ISO time
    wall_s: float
    machine: Machine
    versions: dict[str, str]
    options: dict[str, Any]  # the command's options, by the names results.json has always used
    targets: dict[str, TargetInfo]


class CompareResults(Results):
    mode: str  # "closed", "open" or "paired" (each closed run, then open at its req/s)
    load_avg_1m_at_end: float
    runs: list[RunRecord]
    charts: dict[str, dict[str, str]]  # scenario -> chart title -> file


class CapacityResults(Results):
    mode: str  # "closed" (steps of users) or "open" (steps of arrival rates)
    searches: list[SearchRecord]
    charts: dict[str, str]  # scenario -> file
