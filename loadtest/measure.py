"""One measured run against one target, the way compare and capacity both need it:
wait until the target is idle, run (its first seconds a warm-up whose statistics are dropped),
then judge it (ceiling, warnings) into a plain dict."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadtest import checks
from loadtest.littles_law import CPU_UNIT_S, Limits, ceiling
from loadtest.monitor import cpu_unit_s, read_runtime, wait_idle
from loadtest.run import RunOutcome, RunSpec, run_locust
from loadtest.scenarios import Scenario


@dataclass(frozen=True)
class Target:
    variant: str
    url: str
    limits: Limits
    cores: int
    cpu_unit_s: dict[str, float]  # per CPU kind, measured on the target (see monitor.cpu_unit_s)


@dataclass(frozen=True)
class Load:
    users: int
    spawn_rate: float
    duration_s: int
    warmup_s: int = 0
    delay_ms: int = 200
    work: int = 20
    stop_timeout_s: int = 5
    drain_timeout_s: int = 60
    cpu_warn_pct: float = checks.CPU_WARN_PCT
    max_failure_pct: float = 1.0
    sample_interval_s: float = 0.5


def measure(scenario: Scenario, target: Target, load: Load, prefix: Path) -> dict[str, Any]:
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
    outcome = run_locust(_spec(scenario, target, load, prefix), load.sample_interval_s)
    record = _record(scenario, target, load, outcome)
    cpu_bound = checks.generator_cpu_warning(outcome.cpu_busiest, load.cpu_warn_pct)
    record["generator_cpu_bound"] = cpu_bound is not None
    record["warnings"] = warnings + _judge(outcome, record, load, cpu_bound)
    return record


def _spec(scenario: Scenario, target: Target, load: Load, prefix: Path) -> RunSpec:
    return RunSpec(
        scenario=scenario,
        url=target.url,
        users=load.users,
        spawn_rate=load.spawn_rate,
        duration_s=load.duration_s,
        warmup_s=load.warmup_s,
        prefix=prefix,
        delay_ms=load.delay_ms,
        work=load.work,
        stop_timeout_s=load.stop_timeout_s,
    )


def _cpu_unit(scenario: str, target: Target) -> float:
    kind = "native" if scenario == "cpu-native" else "python"
    return target.cpu_unit_s.get(kind, CPU_UNIT_S)


def _record(
    scenario: Scenario,
    target: Target,
    load: Load,
    outcome: RunOutcome,
) -> dict[str, Any]:
    unit = _cpu_unit(scenario.name, target)
    ceil = ceiling(
        scenario.name,
        target.variant,
        load.users,
        delay_ms=load.delay_ms,
        work=load.work,
        limits=target.limits,
        cores=target.cores,
        cpu_unit_s=unit,
    )
    stats = outcome.summary.as_dict()
    rps = outcome.summary.rps
    latency = ceil.latency_s(load.users)
    return {
        "scenario": scenario.name,
        "variant": target.variant,
        "url": target.url,
        "user_class": scenario.user_class,
        "users": load.users,
        "spawn_rate": load.spawn_rate,
        "duration_s": load.duration_s,
        "warmup_s": load.warmup_s,
        "delay_ms": load.delay_ms,
        "work": load.work,
        "command": shlex.join(outcome.command),
        "exit_code": outcome.exit_code,
        "timed_out": outcome.timed_out,
        "wall_s": outcome.wall_s,
        "stats": stats,
        "ceiling": {
            "rps": ceil.rps,
            "why": ceil.why,
            "expected_latency_s": latency,
            "cpu_unit_ms": round(unit * 1000, 3),
        },
        "pct_of_ceiling": 100 * rps / ceil.rps if rps is not None and ceil.rps else None,
        "server_peaks": outcome.server_peaks,
        "generator_cpu": outcome.cpu_summary,
        "locust_warned_cpu": outcome.locust_warned_cpu,
        "files": outcome.files(),
        "history": outcome.history,
        "server_samples": outcome.server_samples,
        "cpu_samples": outcome.cpu_samples,
    }


def _judge(
    outcome: RunOutcome, record: dict[str, Any], load: Load, cpu_bound: str | None
) -> list[str]:
    found = [
        cpu_bound,
        checks.short_run_warning(
            load.duration_s,
            record["ceiling"]["expected_latency_s"],
            None if outcome.summary.p95_ms is None else outcome.summary.p95_ms / 1000,
        ),
        checks.runtime_polls_warning(
            int(outcome.server_peaks.get("polls_answered") or 0),
            int(outcome.server_peaks.get("polls_sent") or 0),
        ),
        checks.failures_warning(outcome.summary.failure_pct, load.max_failure_pct),
    ]
    if outcome.locust_warned_cpu and found[0] is None:
        found.append("Locust itself logged 'CPU usage above 90%' (see the run's .log)")
    if outcome.timed_out:
        found.append("Locust did not stop by itself and was terminated (safety timeout)")
    elif outcome.exit_code not in (0, 1):  # 1: Locust's exit code when requests failed
        found.append(f"Locust exited with code {outcome.exit_code} (see the run's .log)")
    if outcome.summary.requests == 0:
        found.append("no request completed during the run")
    return [w for w in found if w]


class TargetError(RuntimeError):
    """A target did not answer /runtime: nothing to measure."""


def discover(
    urls: dict[str, str], variants: list[str], scenarios: list[str], cores: int
) -> tuple[dict[str, Target], dict[str, Any]]:
    """Each variant's settings in force (its /runtime) and, for CPU scenarios, how long one
    work unit really takes there. Returns the targets and the raw /runtime answers."""
    kinds = {"native" if s == "cpu-native" else "python" for s in scenarios if s.startswith("cpu")}
    if "mixed" in scenarios:
        kinds.add("python")
    targets: dict[str, Target] = {}
    runtimes: dict[str, Any] = {}
    for variant in variants:
        url = urls[variant]
        try:
            runtime = read_runtime(url, timeout=30)
        except Exception as exc:
            raise TargetError(f"{variant}: {url}/runtime did not answer ({exc})") from exc
        if runtime.get("variant") != variant:
            raise TargetError(f"{url} serves variant {runtime.get('variant')!r}, not {variant!r}")
        units = {k: u for k in sorted(kinds) if (u := cpu_unit_s(url, k)) is not None}
        limits = Limits.from_settings(runtime.get("settings", {}))
        # The target's own CPUs (a container's limit), not this load generator's.
        target_cores = max(1, round(runtime.get("cpus") or cores))
        targets[variant] = Target(variant, url, limits, target_cores, units)
        runtimes[variant] = runtime
    return targets, runtimes
