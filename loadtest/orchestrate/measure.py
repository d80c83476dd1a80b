"""Measure one run against one target, the way compare and capacity both need it:
wait until the target is idle, run (its first seconds a warm-up whose statistics are dropped),
then judge it (ceiling, warnings) into a RunRecord."""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from loadtest.analysis import checks, server_side
from loadtest.analysis.littles_law import Limits, ceiling
from loadtest.analysis.records import OpenLoopSummary, RunRecord
from loadtest.generator.scenarios import CpuKind, Scenario
from loadtest.orchestrate.monitor import CpuSampler, cpu_unit_s, read_runtime, wait_idle
from loadtest.orchestrate.run import Load, RunOutcome, RunSpec, run_locust

__all__ = ["Load", "Target", "TargetError", "discover", "measure"]


@dataclass(frozen=True)
class Target:
    variant: str
    url: str
    limits: Limits
    cores: int
    cpu_unit_s: dict[CpuKind, float]  # per CPU kind, measured on the target (monitor.cpu_unit_s)


def measure(scenario: Scenario, target: Target, load: Load, prefix: Path) -> RunRecord:
    """Run `scenario` on `target`; Locust's files go to `prefix`*. Returns the run's record."""
    warnings: list[str] = []
    # What an earlier run left queued in this server must not land in this one.
    drained = wait_idle(target.url, load.drain_timeout_s)
    if drained is None:
        warnings.append(
            f"target still busy after {load.drain_timeout_s} s of waiting: the run starts "
            "with an earlier run's requests in the server"
        )
    # The warm-up is the first seconds of the same run (same users, spawn rate), so pools,
    # connections and queues are in their steady state when the measured window opens.
    outcome = run_locust(RunSpec(scenario, target.url, load, prefix))
    record = _record(scenario, target, load, outcome)
    cpu_bound = checks.generator_cpu_warning(outcome.cpu_busiest, load.cpu_warn_pct)
    record["generator_cpu_bound"] = cpu_bound is not None
    record["warnings"] = warnings + _judge(outcome, record, load, cpu_bound)
    return record


def _cpu_unit(scenario: Scenario, target: Target) -> float | None:
    """The measured time of one CPU unit of the scenario's kind; None: the API's nominal."""
    return target.cpu_unit_s.get(scenario.cpu_kind)


def _record(scenario: Scenario, target: Target, load: Load, outcome: RunOutcome) -> RunRecord:
    unit = _cpu_unit(scenario, target)
    # Open loop: the concurrency offered is bounded by the in-flight cap, not by users.
    offered = load.max_in_flight if load.open else load.users
    ceil = ceiling(
        scenario.name,
        target.variant,
        offered,
        delay_ms=load.delay_ms,
        work=load.work,
        limits=target.limits,
        cores=target.cores,
        cpu_unit_s=unit,
    )
    unit_ms = target.limits.cpu_unit_ms if unit is None else unit * 1000
    rps = outcome.summary.rps
    start, end = outcome.summary.started_at, outcome.summary.ended_at
    # from the first request Locust counted, i.e. after the warm-up, to its last
    polls = server_side.in_window(outcome.server_samples, start, end)
    probes = server_side.in_window(outcome.bystander_samples or [], start, end)
    return {
        "scenario": scenario.name,
        "variant": target.variant,
        "url": target.url,
        "user_class": scenario.user_class,
        "mode": "open" if load.open else "closed",
        "users": load.users,
        "arrival_rate": load.arrival_rate if load.open else None,
        "arrivals": load.arrivals if load.open else None,
        "max_in_flight": load.max_in_flight if load.open else None,
        "open_loop": cast(OpenLoopSummary | None, outcome.open_loop_books),
        "spawn_rate": load.spawn_rate,
        "duration_s": load.duration_s,
        "warmup_s": load.warmup_s,
        "delay_ms": load.delay_ms,
        "work": load.work,
        "command": shlex.join(outcome.command),
        "exit_code": outcome.exit_code,
        "timed_out": outcome.timed_out,
        "wall_s": outcome.wall_s,
        "stats": outcome.summary.as_dict(),
        "ceiling": {
            "rps": ceil.rps,
            "why": ceil.why,
            # closed loop: users / ceiling; open loop: no steady state to expect above it
            "expected_latency_s": None if load.open else ceil.latency_s(load.users),
            "cpu_unit_ms": round(unit_ms, 3),
        },
        "pct_of_ceiling": 100 * rps / ceil.rps if rps is not None and ceil.rps else None,
        "server_peaks": server_side.peaks(polls),
        "server": server_side.server_summary(polls, outcome.server_source, outcome.cpu_samples),
        "bystander": server_side.bystander_summary(probes),
        "generator_cpu": outcome.cpu_summary or CpuSampler.summary([]),
        "locust_warned_cpu": outcome.locust_warned_cpu,
        "files": outcome.files(),
        "history": outcome.history,
        "server_samples": outcome.server_samples,
        "bystander_samples": outcome.bystander_samples or [],
        "cpu_samples": outcome.cpu_samples,
        "generator_cpu_bound": False,  # judged by measure()
        "warnings": [],
    }


def _judge(outcome: RunOutcome, record: RunRecord, load: Load, cpu_bound: str | None) -> list[str]:
    found = [
        cpu_bound,
        _server_source_warning(outcome),
        checks.short_run_warning(
            load.duration_s,
            record["ceiling"]["expected_latency_s"],
            None if outcome.summary.p95_ms is None else outcome.summary.p95_ms / 1000,
        ),
        checks.runtime_polls_warning(
            record["server_peaks"]["polls_answered"], record["server_peaks"]["polls_sent"]
        ),
        checks.failures_warning(outcome.summary.failure_pct, load.max_failure_pct),
        *checks.open_loop_warnings(record["open_loop"]),
    ]
    if outcome.locust_warned_cpu and found[0] is None:
        found.append("Locust itself logged 'CPU usage above 90%' (see the run's .log)")
    if outcome.timed_out:
        found.append("Locust did not stop by itself and was terminated (safety timeout)")
    elif outcome.exit_code not in (0, 1):  # 1: Locust's exit code when requests failed
        found.append(f"Locust exited with code {outcome.exit_code} (see the run's .log)")
    if load.open and outcome.open_loop_books is None:
        found.append("Locust wrote no _arrivals.json: the open loop's accounting is missing")
    if outcome.summary.requests == 0:
        found.append("no request completed during the run")
    return [w for w in found if w]


def _server_source_warning(outcome: RunOutcome) -> str | None:
    """One warning when the run lacks the Locust watcher's files (Locust crashed or was killed
    before writing them, or a locustfile without the watcher): what the run then lacks."""
    lacks = [
        (name, what)
        for name, what, absent in (
            ("_server.csv", "no server samples", outcome.server_source != "locust"),
            ("_bystander.csv", "no bystander latency", outcome.bystander_samples is None),
        )
        if absent
    ]
    if not lacks:
        return None
    names, whats = " or ".join(n for n, _ in lacks), "; ".join(w for _, w in lacks)
    return f"Locust wrote no {names} (the server watcher's files; see the run's .log): {whats}"


class TargetError(RuntimeError):
    """A target did not answer /runtime: nothing to measure."""


def discover(
    urls: dict[str, str], variants: list[str], scenarios: Iterable[Scenario], cores: int
) -> tuple[dict[str, Target], dict[str, dict[str, Any]]]:
    """Each variant's limits in force (its /runtime) and, for scenarios with CPU work, how long
    one work unit of that kind really takes there. Returns the targets and the raw /runtime
    answers."""
    kinds = sorted({k for s in scenarios if (k := s.cpu_unit_kind) is not None})
    targets: dict[str, Target] = {}
    runtimes: dict[str, dict[str, Any]] = {}
    for variant in variants:
        url = urls[variant]
        try:
            runtime = read_runtime(url, timeout=30)
        except Exception as exc:
            raise TargetError(f"{variant}: {url}/runtime did not answer ({exc})") from exc
        if runtime.get("variant") != variant:
            raise TargetError(f"{url} serves variant {runtime.get('variant')!r}, not {variant!r}")
        try:
            limits = Limits.from_runtime(runtime)
        except ValueError as exc:
            raise TargetError(f"{variant}: {url}{exc}") from exc
        units = {k: u for k in kinds if (u := cpu_unit_s(url, k)) is not None}
        # The target's own CPUs (a container's limit), not this load generator's.
        target_cores = max(1, round(runtime.get("cpus") or cores))
        targets[variant] = Target(variant, url, limits, target_cores, units)
        runtimes[variant] = runtime
    return targets, runtimes
