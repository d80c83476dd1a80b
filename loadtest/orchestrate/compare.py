"""Run the same load on every variant, side by side: `python -m loadtest.compare` (`make compare`).

For each scenario x variant, one after another: wait until the target is idle, then one headless
Locust run whose first --warmup seconds are not counted (their statistics are dropped), sampling
the target's /runtime and Locust's own CPU. Writes results/<timestamp>/: report.md,
results.json, PNG charts, and Locust's csv/json/html/log of every run under locust/.

The load is a closed loop (--users users, each waiting for its answer) unless --arrival-rate
gives an open loop (requests on a schedule, latency from the scheduled start); with
--pair-open-loop each closed run is followed by an open one at the req/s it achieved, and the
report puts both p99s side by side.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import psutil

from loadtest.analysis import checks
from loadtest.analysis.machine import machine, versions
from loadtest.analysis.outputs import Progress, charts_available, new_dir, now_iso, say, write_json
from loadtest.analysis.records import CompareResults, RunRecord
from loadtest.analysis.report import compare_markdown
from loadtest.generator.scenarios import SCENARIOS, Scenario
from loadtest.generator.targets import load_targets
from loadtest.orchestrate import cli
from loadtest.orchestrate.measure import Load, Target, TargetError, discover, measure

# Locust start-up and report writing, plus waiting for an idle target, per run: only a first
# guess for the ETA, which then follows the runs' real wall time (outputs.Progress).
_RUN_OVERHEAD_S = 4


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m loadtest.compare",
        description="Run the same Locust load on each variant, one after another, and write "
        "a side-by-side report (report.md, results.json, PNG charts).",
    )
    cli.add_common_arguments(p)
    p.add_argument("--users", type=int, default=200, help="concurrent users (default: 200)")
    p.add_argument(
        "--spawn-rate",
        type=float,
        default=None,
        help="users started per second (default: all within 1 s)",
    )
    p.add_argument(
        "--duration",
        dest="duration_s",
        metavar="DURATION",
        type=cli.positive_duration,
        default=30,
        help="measured time per run, e.g. 30s, 1m (default: 30s)",
    )
    p.add_argument(
        "--warmup",
        dest="warmup_s",
        metavar="DURATION",
        type=cli.duration,
        default=5,
        help="first seconds of each run under the same load, not counted; 0 = none (default: 5s)",
    )
    p.add_argument(
        "--cpu-warn-pct",
        type=float,
        default=checks.CPU_WARN_PCT,
        help="warn when a Locust process exceeds this %% of one core (default: 90)",
    )
    p.add_argument(
        "--sample-interval",
        dest="sample_interval_s",
        metavar="SECONDS",
        type=float,
        default=0.5,
        help="seconds between /runtime and CPU samples (default: 0.5)",
    )
    p.add_argument(
        "--arrival-rate",
        type=cli.positive_rate,
        default=None,
        metavar="R",
        help="open loop: start R requests per second on a schedule, whether or not earlier "
        "ones were answered; latency counts from each request's scheduled start (default: "
        "closed loop, --users users)",
    )
    p.add_argument(
        "--pair-open-loop",
        action="store_true",
        help="after each closed-loop run, an open-loop run at the req/s it achieved: the "
        "report compares their p99 at the same throughput",
    )
    cli.add_open_loop_arguments(p)
    args = p.parse_args(argv)
    if args.users < 1:
        p.error("--users must be at least 1")
    if args.max_in_flight < 1:
        p.error("--max-in-flight must be at least 1")
    if args.arrival_rate is not None and args.pair_open_loop:
        p.error("--pair-open-loop takes the rate from each closed run: leave out --arrival-rate")
    if args.arrival_rate is not None:
        # one Locust user keeps the schedule; it starts a greenlet per arrival
        args.users, args.spawn_rate = 1, 1.0
    args.spawn_rate = args.spawn_rate or float(args.users)
    return args


def open_at(load: Load, rate: float) -> Load:
    """`load` as an open loop at `rate` arrivals per second (one Locust user keeps it)."""
    return replace(load, users=1, spawn_rate=1.0, arrival_rate=rate)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    started, t0 = now_iso(), time.monotonic()
    try:
        urls = load_targets(args.targets)
    except ValueError as exc:
        say(f"compare: {exc}")
        return 2
    host = machine()
    say("compare: reading /runtime of " + ", ".join(f"{v} {urls[v]}" for v in args.variants))
    scenarios = [SCENARIOS[s] for s in args.scenarios]
    try:
        targets, runtimes = discover(urls, args.variants, scenarios, host["cores"])
    except TargetError as exc:
        say(f"compare: {exc} (is `make lab` running? see --targets)")
        return 2
    out = new_dir(args.out)
    load = Load.from_args(args, arrival_rate=args.arrival_rate or 0.0)
    mode = "paired" if args.pair_open_loop else "open" if load.open else "closed"
    plan = [(s, v) for s in args.scenarios for v in args.variants]
    per_run = load.warmup_s + load.duration_s + _RUN_OVERHEAD_S
    progress = Progress(len(plan) * (2 if args.pair_open_loop else 1), per_run)
    runs: list[RunRecord] = []
    for scenario, variant in plan:
        prefix = out / "locust" / f"{scenario}-{variant}"
        record = _run(SCENARIOS[scenario], targets[variant], load, prefix, progress)
        runs.append(record)
        if not args.pair_open_loop:
            continue
        rate = record["stats"]["rps"]
        if not rate:
            say(f"  {scenario} x {variant}: no req/s to repeat as an open loop")
            progress.total -= 1
            continue
        opened = open_at(load, round(rate, 1))
        runs.append(
            _run(
                SCENARIOS[scenario],
                targets[variant],
                opened,
                prefix.with_name(f"{prefix.name}-open"),
                progress,
            )
        )
    results: CompareResults = {
        "kind": "compare",
        "mode": mode,
        "command": shlex.join(["python", "-m", "loadtest.compare", *argv]),
        "started": started,
        "wall_s": round(time.monotonic() - t0, 1),
        "machine": host,
        "load_avg_1m_at_end": round(psutil.getloadavg()[0], 2),
        "versions": versions(),
        "options": {"scenarios": args.scenarios, "variants": args.variants, **_options(args, load)},
        "targets": {
            v: {
                "url": urls[v],
                "settings": runtimes[v].get("settings", {}),
                "runtime": runtimes[v],
                "cpu_unit_ms": {k: round(u * 1000, 3) for k, u in targets[v].cpu_unit_s.items()},
            }
            for v in args.variants
        },
        "runs": _relative(runs, out),
        "charts": draw_charts(runs, out) if charts_available() else {},
    }
    results["wall_s"] = round(time.monotonic() - t0, 1)
    write_json(out / "results.json", results)
    (out / "report.md").write_text(compare_markdown(results))
    say(f"compare: done in {results['wall_s']:.0f} s: {out / 'report.md'}")
    return 0


def _options(args: argparse.Namespace, load: Load) -> dict[str, object]:
    """results.json's options: the Load's, plus what --pair-open-loop used for its open runs."""
    options = load.options()
    if args.pair_open_loop:
        options |= {
            "pair_open_loop": True,
            "arrivals": load.arrivals,
            "max_in_flight": load.max_in_flight,
        }
    return options


def _run(
    scenario: Scenario, target: Target, load: Load, prefix: Path, progress: Progress
) -> RunRecord:
    how = (
        f"open loop, {load.arrival_rate:g} req/s ({load.arrivals})"
        if load.open
        else f"{load.users} users"
    )
    progress.step(f"{scenario.name} x {target.variant}: {how}, {load.duration_s} s")
    record = measure(scenario, target, load, prefix)
    for warning in record["warnings"]:
        say(f"  warning: {warning}")
    st = record["stats"]
    say(f"  {st['requests']} requests, {st['rps'] or 0:.1f} req/s, p95 {st['p95_ms']} ms")
    return record


def draw_charts(runs: list[RunRecord], out: Path) -> dict[str, dict[str, str]]:
    from loadtest.analysis.charts import scenario_bars, scenario_over_time

    charts: dict[str, dict[str, str]] = {}
    for scenario in dict.fromkeys(r["scenario"] for r in runs):
        mine = [r for r in runs if r["scenario"] == scenario]
        bars = scenario_bars(scenario, mine, out / f"{scenario}-bars.png")
        timeline = scenario_over_time(scenario, mine, out / f"{scenario}-over-time.png")
        charts[scenario] = {"throughput and latency": bars.name, "over time": timeline.name}
    return charts


def _relative(runs: list[RunRecord], out: Path) -> list[RunRecord]:
    """File paths relative to the results folder, so the folder can be moved or shared."""
    for run in runs:
        run["files"] = {k: str(Path(v).relative_to(out)) for k, v in run["files"].items()}
    return runs


if __name__ == "__main__":
    sys.exit(main())
