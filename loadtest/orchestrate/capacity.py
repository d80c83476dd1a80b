"""Find how many users a variant can take: `python -m loadtest.capacity` (`make capacity`).

Steps the users up (1, 2, 5, 10, 25, ... up to --max-users), one short headless Locust run per
step, until p95 crosses the SLO or failures exceed the limit, per scenario and variant. One run
per step rather than one run with a step shape: each step gets Locust's own clean stats (no
requests queued during the previous step land in it), the target is drained between steps, and
the search stops as soon as a step fails instead of running a fixed schedule.

With --arrival-rate the steps are arrival rates of an open loop instead (requests on a
schedule, latency from the scheduled start: generator/open_loop.py), and once a rate fails the
search halves the gap to the last rate that passed (--refine times): the knee is the highest
arrival rate whose p95 met the SLO.
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
from loadtest.analysis.modes import is_open, level, level_text
from loadtest.analysis.outputs import Progress, charts_available, new_dir, now_iso, say, write_json
from loadtest.analysis.records import CapacityResults, RunRecord, SearchRecord
from loadtest.analysis.report import capacity_markdown
from loadtest.generator.scenarios import SCENARIOS
from loadtest.generator.targets import load_targets
from loadtest.orchestrate import cli
from loadtest.orchestrate.measure import Load, Target, TargetError, discover, measure

DEFAULT_STEPS = [1, 2, 5, 10, 25, 50, 100, 200, 400, 800]
# Open loop: arrivals per second, up to 2000: async's knee on upstream lies past 1000 on the 2-core
# reference machine. One Locust process keeps about 1,000/s there; above that the report says when
# the generator fell behind its schedule.
DEFAULT_RATES = [5, 10, 25, 50, 100, 200, 300, 400, 600, 800, 1000, 1200, 1600, 2000]


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
    p.add_argument(
        "--arrival-rate",
        dest="rates",
        nargs="?",
        type=cli.rate_list,
        const=DEFAULT_RATES,
        default=None,
        metavar="RATES",
        help="open loop: step arrival rates (req/s on a schedule, latency from the scheduled "
        "start) instead of users; alone: " + ",".join(map(str, DEFAULT_RATES)),
    )
    p.add_argument(
        "--max-rate", type=float, default=2000.0, help="open loop: stop after this rate (2000)"
    )
    p.add_argument(
        "--refine",
        type=int,
        default=2,
        help="open loop: after the first rate that fails, halve the gap to the last that "
        "passed this many times (default: 2)",
    )
    cli.add_open_loop_arguments(p)
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
    if args.rates is not None:
        if over := [r for r in args.rates if r > args.max_rate]:
            rates = ", ".join(f"{r:g}" for r in over)
            print(
                f"capacity: left out rates above --max-rate {args.max_rate:g}: {rates}",
                file=sys.stderr,
            )
        args.rates = [r for r in args.rates if r <= args.max_rate]
        if not args.rates:
            p.error("no rate is within --max-rate")
    if args.max_in_flight < 1:
        p.error("--max-in-flight must be at least 1")
    return args


def verdict(record: RunRecord, slo_ms: float, max_failure_pct: float) -> str | None:
    """Why this step is not sustainable, or None when it meets the SLO."""
    st, at = record["stats"], level_text(record)
    if not st["requests"]:
        return f"no request completed at {at}"
    books = record.get("open_loop")
    if books and books["dropped"]:
        # the server fell max-in-flight requests behind: whatever the percentiles say
        return f"{books['dropped']} arrivals dropped (in-flight cap full) at {at}"
    if st["failure_pct"] is not None and st["failure_pct"] > max_failure_pct:
        return f"failures {st['failure_pct']:.1f}% > {max_failure_pct:g}% at {at}"
    if st["p95_ms"] is not None and st["p95_ms"] > slo_ms:
        return f"p95 {st['p95_ms']:.0f} ms > SLO {slo_ms:g} ms at {at}"
    return None


def generator_limit(record: RunRecord) -> str | None:
    """Why a harder step would measure Locust rather than the server, if it would."""
    if record["generator_cpu_bound"]:
        return f"load generator CPU-bound at {level_text(record)}: cannot push harder"
    books = record.get("open_loop")
    lag = books["send_lag_p50_ms"] if books else None
    if lag is not None and lag > checks.SEND_LAG_BEHIND_MS:
        return (
            f"load generator behind its schedule at {level_text(record)} (send lag p50 "
            f"{lag:.0f} ms): cannot push harder"
        )
    return None


class _Stepper:
    """Runs one step (users, or an arrival rate) of a search and judges it."""

    def __init__(
        self, scenario: str, target: Target, args: argparse.Namespace, out: Path, progress: Progress
    ) -> None:
        self.scenario, self.target, self.args = scenario, target, args
        self.out, self.progress = out, progress
        self.base = Load.from_args(args, users=1, spawn_rate=1.0, duration_s=args.step_duration)

    def users(self, users: int) -> tuple[RunRecord, str | None]:
        # all users at once: the step is short
        load = replace(self.base, users=users, spawn_rate=float(users))
        return self._step(load, f"{users} users", f"u{users}")

    def rate(self, rate: float) -> tuple[RunRecord, str | None]:
        load = replace(self.base, arrival_rate=rate)  # one Locust user keeps the schedule
        return self._step(load, f"open loop, {rate:g} req/s", f"r{rate:g}")

    def _step(self, load: Load, what: str, tag: str) -> tuple[RunRecord, str | None]:
        """The step's record, and why the search ends here (None: go on)."""
        self.progress.step(f"{self.scenario} x {self.target.variant}: {what}")
        prefix = self.out / "locust" / f"{self.scenario}-{self.target.variant}-{tag}"
        record = measure(SCENARIOS[self.scenario], self.target, load, prefix)
        failed = verdict(record, self.args.slo_ms, self.args.max_failure_pct)
        record["ok"] = failed is None
        record["files"] = {
            k: str(Path(v).relative_to(self.out)) for k, v in record["files"].items()
        }
        st = record["stats"]
        say(f"  {st['rps'] or 0:.1f} req/s, p95 {st['p95_ms']} ms: {failed or 'within the SLO'}")
        return record, failed or generator_limit(record)


def search(
    scenario: str, target: Target, args: argparse.Namespace, out: Path, progress: Progress
) -> SearchRecord:
    stepper = _Stepper(scenario, target, args, out, progress)
    steps: list[RunRecord] = []
    if args.rates is not None:
        return search_rates(stepper, args.rates, args.refine)
    stop_reason = f"reached the last step ({args.steps[-1]} users) within the SLO"
    for users in args.steps:
        record, reason = stepper.users(users)
        steps.append(record)
        # a failed step, or more users would measure Locust's queueing, not the server's
        if reason:
            stop_reason = reason
            break
    return summarize_search(scenario, target.variant, steps, stop_reason)


def search_rates(stepper: _Stepper, rates: list[float], refine: int) -> SearchRecord:
    """Open loop: up the rates until one fails, then bisect between it and the last that
    passed, `refine` times (steps of less than 1 req/s are not worth a run)."""
    steps: list[RunRecord] = []
    stop_reason = f"reached the last rate ({rates[-1]:g} req/s) within the SLO"
    passed: float | None = None
    failed: float | None = None
    for rate in rates:
        record, reason = stepper.rate(rate)
        steps.append(record)
        if record["ok"]:
            passed = rate
        if reason is None:
            continue
        stop_reason = reason
        if not record["ok"]:
            failed = rate
        break
    for _ in range(refine if failed is not None and passed is not None else 0):
        assert failed is not None and passed is not None
        mid = round((passed + failed) / 2, 1)
        if mid - passed < 1 or failed - mid < 1:
            break
        record, reason = stepper.rate(mid)
        steps.append(record)
        if record["ok"]:
            passed = mid
            if reason:  # within the SLO, but the generator could not go on
                stop_reason = reason
                break
        else:
            failed, stop_reason = mid, reason or stop_reason
    steps.sort(key=level)
    return summarize_search(stepper.scenario, stepper.target.variant, steps, stop_reason)


def summarize_search(
    scenario: str, variant: str, steps: list[RunRecord], stop_reason: str
) -> SearchRecord:
    ok = [s for s in steps if s["ok"]]
    # The knee: the sustainable step with the most req/s (the lightest load on a tie).
    knee = max(ok, key=lambda s: (s["stats"]["rps"] or 0, -level(s)), default=None)
    # Past the knee, the lightest step that failed shows the bottleneck at work; below it, the
    # knee.
    failed = [s for s in steps if not s["ok"]]
    limit = min(failed, key=level) if failed else knee
    open_loop = bool(steps) and is_open(steps[0])
    return {
        "scenario": scenario,
        "variant": variant,
        "mode": "open" if open_loop else "closed",
        "steps": steps,
        "stop_reason": stop_reason,
        "knee_users": knee["users"] if knee and not open_loop else None,
        "knee_rate": level(knee) if knee and open_loop else None,
        "max_rps": knee["stats"]["rps"] if knee else None,
        "knee_p95_ms": knee["stats"]["p95_ms"] if knee else None,
        "knee_verdict": knee["server"]["verdict"] if knee else None,
        "limit_verdict": limit["server"]["verdict"] if limit else None,
        "limit_users": limit["users"] if limit and not open_loop else None,
        "limit_rate": level(limit) if limit and open_loop else None,
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
    # at most: every step of the ladder, and the open loop's bisection steps
    most = len(args.steps) if args.rates is None else len(args.rates) + max(0, args.refine)
    progress = Progress(len(plan) * most, args.step_duration + 4)
    searches: list[SearchRecord] = []
    for scenario, variant in plan:
        found = search(scenario, targets[variant], args, out, progress)
        # Steps never run (the search stopped early) leave the ETA.
        progress.total -= most - len(found["steps"])
        knee = (
            f"{found['knee_users']} users"
            if found["mode"] == "closed"
            else f"an arrival rate of {found['knee_rate']} req/s"
        )
        say(
            f"  => {scenario} x {variant}: {found['max_rps'] or 0:.1f} req/s at {knee}; "
            f"stopped: {found['stop_reason']}"
        )
        searches.append(found)
    charts = draw_charts(searches, args.slo_ms, out) if charts_available() else {}
    results: CapacityResults = {
        "kind": "capacity",
        "mode": "closed" if args.rates is None else "open",
        "command": shlex.join(["python", "-m", "loadtest.capacity", *argv]),
        "started": started,
        "machine": host,
        "versions": versions(),
        "options": {
            "scenarios": args.scenarios,
            "variants": args.variants,
            "steps": args.steps,
            **(
                {}
                if args.rates is None
                else {
                    "rates": args.rates,
                    "refine": args.refine,
                    "arrivals": args.arrivals,
                    "max_in_flight": args.max_in_flight,
                }
            ),
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
