"""Find how many users a variant can take: `python -m loadtest.capacity` (`make capacity`).

Steps the users up (1, 2, 5, 10, 25, ... up to --max-users), one short headless Locust run per
step, until p95 crosses the SLO or failures exceed the limit, per scenario and variant. One run
per step rather than one run with a step shape: each step gets Locust's own clean stats (no
requests queued during the previous step land in it), the target is drained between steps, and
the search stops as soon as a step fails instead of running a fixed schedule.
Writes results/<timestamp>-capacity/: report.md, results.json and a PNG per scenario.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from loadtest.analysis import checks
from loadtest.analysis.machine import machine, versions
from loadtest.analysis.outputs import Progress, charts_available, new_dir, now_iso, say, write_json
from loadtest.analysis.records import CapacityResults, RunRecord, SearchRecord
from loadtest.analysis.report import capacity_markdown
from loadtest.generator.scenarios import SCENARIOS
from loadtest.generator.targets import load_targets
from loadtest.orchestrate import cli
from loadtest.orchestrate.measure import Load, Target, TargetError, discover, measure

DEFAULT_STEPS = [1, 2, 5, 10, 25, 50, 100, 200, 400, 800]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m loadtest.capacity",
        description="Step the users up until p95 crosses an SLO or failures exceed a limit; "
        "report the highest sustainable req/s and the users at the knee per variant.",
    )
    cli.add_common_arguments(p)
    p.add_argument(
        "--steps",
        type=cli.int_list,
        default=DEFAULT_STEPS,
        help="users per step (default: " + ",".join(map(str, DEFAULT_STEPS)) + ")",
    )
    p.add_argument("--max-users", type=int, default=800, help="stop after this many users")
    p.add_argument(
        "--step-duration",
        type=cli.positive_duration,
        default=10,
        help="Locust run time of each step (default: 10s)",
    )
    p.add_argument(
        "--warmup",
        dest="warmup_s",
        metavar="DURATION",
        type=cli.duration,
        default=2,
        help="first seconds of each step, not counted (Locust's start-up burst) (default: 2s)",
    )
    p.add_argument("--slo-ms", type=float, default=500.0, help="p95 SLO in ms (default: 500)")
    p.add_argument(
        "--max-failure-pct",
        type=float,
        default=1.0,
        help="largest failure %% still acceptable (default: 1)",
    )
    p.add_argument(
        "--cpu-warn-pct",
        type=float,
        default=checks.CPU_WARN_PCT,
        help="a Locust process above this %% of one core ends the search",
    )
    args = p.parse_args(argv)
    args.steps = [n for n in args.steps if n <= args.max_users]
    if not args.steps:
        p.error("no step is within --max-users")
    return args


def verdict(record: RunRecord, slo_ms: float, max_failure_pct: float) -> str | None:
    """Why this step is not sustainable, or None when it meets the SLO."""
    st, users = record["stats"], record["users"]
    if not st["requests"]:
        return f"no request completed at {users} users"
    if st["failure_pct"] is not None and st["failure_pct"] > max_failure_pct:
        return f"failures {st['failure_pct']:.1f}% > {max_failure_pct:g}% at {users} users"
    if st["p95_ms"] is not None and st["p95_ms"] > slo_ms:
        return f"p95 {st['p95_ms']:.0f} ms > SLO {slo_ms:g} ms at {users} users"
    return None


def search(
    scenario: str, target: Target, args: argparse.Namespace, out: Path, progress: Progress
) -> SearchRecord:
    steps: list[RunRecord] = []
    stop_reason = f"reached the last step ({args.steps[-1]} users) within the SLO"
    base = Load.from_args(args, users=1, spawn_rate=1.0, duration_s=args.step_duration)
    for users in args.steps:
        progress.step(f"{scenario} x {target.variant}: {users} users")
        # all users at once: the step is short
        load = replace(base, users=users, spawn_rate=float(users))
        prefix = out / "locust" / f"{scenario}-{target.variant}-u{users}"
        record = measure(SCENARIOS[scenario], target, load, prefix)
        failed = verdict(record, args.slo_ms, args.max_failure_pct)
        record["ok"] = failed is None
        record["files"] = {k: str(Path(v).relative_to(out)) for k, v in record["files"].items()}
        steps.append(record)
        st = record["stats"]
        say(f"  {st['rps'] or 0:.1f} req/s, p95 {st['p95_ms']} ms: {failed or 'within the SLO'}")
        if failed:
            stop_reason = failed
            break
        if record["generator_cpu_bound"]:
            # More users would measure Locust's queueing, not the server's.
            stop_reason = f"load generator CPU-bound at {users} users: cannot push harder"
            break
    return summarize_search(scenario, target.variant, steps, stop_reason)


def summarize_search(
    scenario: str, variant: str, steps: list[RunRecord], stop_reason: str
) -> SearchRecord:
    ok = [s for s in steps if s["ok"]]
    # The knee: the sustainable step with the most req/s (the fewest users on a tie).
    knee = max(ok, key=lambda s: (s["stats"]["rps"] or 0, -s["users"]), default=None)
    # Past the knee, the step that failed shows the bottleneck at work; below it, the knee.
    limit = steps[-1] if steps and not steps[-1]["ok"] else knee
    return {
        "scenario": scenario,
        "variant": variant,
        "steps": steps,
        "stop_reason": stop_reason,
        "knee_users": knee["users"] if knee else None,
        "max_rps": knee["stats"]["rps"] if knee else None,
        "knee_p95_ms": knee["stats"]["p95_ms"] if knee else None,
        "knee_verdict": knee["server"]["verdict"] if knee else None,
        "limit_verdict": limit["server"]["verdict"] if limit else None,
        "limit_users": limit["users"] if limit else None,
        "ceiling_at_knee": knee["ceiling"] if knee else None,
    }


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    started, t0 = now_iso(), time.monotonic()
    try:
        urls = load_targets(args.targets)
        host = machine()
        scenarios = [SCENARIOS[s] for s in args.scenarios]
        targets, runtimes = discover(urls, args.variants, scenarios, host["cores"])
    except (ValueError, TargetError) as exc:
        say(f"capacity: {exc} (is `make lab` running? see --targets)")
        return 2
    out = new_dir(args.out, "-capacity")
    plan = [(s, v) for s in args.scenarios for v in args.variants]
    progress = Progress(len(plan) * len(args.steps), args.step_duration + 4)
    searches: list[SearchRecord] = []
    for scenario, variant in plan:
        found = search(scenario, targets[variant], args, out, progress)
        # Steps never run (the search stopped early) leave the ETA.
        progress.total -= len(args.steps) - len(found["steps"])
        say(
            f"  => {scenario} x {variant}: {found['max_rps'] or 0:.1f} req/s at "
            f"{found['knee_users']} users; stopped: {found['stop_reason']}"
        )
        searches.append(found)
    charts = draw_charts(searches, args.slo_ms, out) if charts_available() else {}
    results: CapacityResults = {
        "kind": "capacity",
        "command": shlex.join(["python", "-m", "loadtest.capacity", *argv]),
        "started": started,
        "machine": host,
        "versions": versions(),
        "options": {
            "scenarios": args.scenarios,
            "variants": args.variants,
            "steps": args.steps,
            "step_duration_s": args.step_duration,
            "slo_ms": args.slo_ms,
            "max_failure_pct": args.max_failure_pct,
            "delay_ms": args.delay_ms,
            "work": args.work,
        },
        "targets": {
            v: {"url": urls[v], "settings": runtimes[v].get("settings", {})} for v in args.variants
        },
        "searches": searches,
        "charts": charts,
        "wall_s": round(time.monotonic() - t0, 1),  # last: the whole command, charts included
    }
    write_json(out / "results.json", results)
    (out / "report.md").write_text(capacity_markdown(results))
    say(f"capacity: done in {results['wall_s']:.0f} s: {out / 'report.md'}")
    return 0


def draw_charts(searches: list[SearchRecord], slo_ms: float, out: Path) -> dict[str, str]:
    from loadtest.analysis.charts import capacity_chart

    charts = {}
    for scenario in dict.fromkeys(s["scenario"] for s in searches):
        mine = [s for s in searches if s["scenario"] == scenario]
        charts[scenario] = capacity_chart(
            scenario, mine, slo_ms, out / f"capacity-{scenario}.png"
        ).name
    return charts


if __name__ == "__main__":
    sys.exit(main())
