"""`python -m loadtest.bench_floor` (`make bench-floor`): each variant against the stack's floor.

For each variant, on free loopback ports next to an embedded PostgreSQL and the mock upstream:
the lab's API (`python -m services.api`) and its floor app (`python -m services.floor`, the same
framework, drivers, client, response models and server flags, none of the lab's extras). Each
scenario loads both the same way with one closed-loop client (orchestrate/closed_loop.py) that
holds connections to both and loads one at a time, in short slices whose order alternates every
round: the machine's speed drifts, and slices this short put both apps on the same drift. What
counts is the server process's CPU time over its measured windows per request completed in
them. Each variant's two servers are started afresh --starts times, the rounds split among the
starts: a process's own luck (its memory layout, its hash seed, where the scheduler puts its
threads) moves its CPU per request by several per cent for its whole life. Writes
results/<time>-bench-floor/ (report.md, results.json, the servers' logs) and exits
1 when a lab/floor ratio is above --max-ratio (or a run could not be measured: errors, no
requests).
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import random
import shlex
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psutil

from loadtest.analysis.floor_report import (
    Pair,
    Run,
    failures,
    pair,
    per_start,
    report_md,
    run_numbers,
    table,
)
from loadtest.analysis.machine import machine, versions
from loadtest.analysis.outputs import Progress, new_dir, now_iso, say, write_json
from loadtest.orchestrate import cli, closed_loop
from loadtest.orchestrate.labs import HOST, NativeLab
from services import registry
from services.lab.netcheck import ServerError, free_port
from services.lab.processes import floor_process
from services.lab.procs import ServerProcess

N_ITEMS = 100_000  # seeded by services/db/
SCENARIOS = ("items", "upstream", "db")
# Each app alone once per scenario before the rounds, not counted: its connections open, its
# pools fill, before the first window.
INITIAL_WARMUP_S = 1.0
# Starting and stopping the two servers of a variant, on top of the runs (first ETA guess).
_VARIANT_OVERHEAD_S = 6.0


def paths(scenario: str, delay_ms: int) -> Callable[[], str]:
    if scenario == "items":
        return lambda: f"/items/{random.randint(1, N_ITEMS)}"
    route = {"upstream": "/io/upstream", "db": "/io/db"}[scenario]
    path = f"{route}?delay_ms={delay_ms}"
    return lambda: path


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m loadtest.bench_floor",
        description="Load each variant and a minimal app of the same stack (its floor) the same "
        "way, one after the other; report req/s and API CPU ms per request, and fail when "
        "lab/floor CPU per request exceeds --max-ratio. Starts its own PostgreSQL, upstream and "
        "servers on free ports (no `make lab` needed).",
    )
    p.add_argument(
        "--variants",
        type=cli.variant_list,
        default=list(registry.NAMES),
        help=f"comma-separated subset of {','.join(registry.NAMES)} (default: all)",
    )
    p.add_argument(
        "--scenarios",
        type=lambda v: [s for s in SCENARIOS if s in cli._names(v, list(SCENARIOS), "scenario")],
        default=list(SCENARIOS),
        help=f"comma-separated subset of {','.join(SCENARIOS)} (default: all)",
    )
    p.add_argument("--users", type=int, default=50, help="connections to each app (default: 50)")
    p.add_argument(
        "--rounds",
        type=int,
        default=20,
        help="rounds per scenario; each round measures each app once, the order alternating "
        "(lab, floor, floor, lab, ...) (default: 20)",
    )
    p.add_argument(
        "--starts",
        type=int,
        default=3,
        help="fresh lab and floor processes per variant, the rounds split among them: one "
        "process's luck (memory layout, hash seed, placement) lasts its whole life, and only "
        "fresh processes average it out (default: 3)",
    )
    p.add_argument(
        "--duration",
        dest="duration_s",
        metavar="DURATION",
        type=cli.positive_seconds,
        default=1.0,
        help="measured time per app and round (a slice), e.g. 1s or 500ms (default: 1s)",
    )
    p.add_argument(
        "--warmup",
        dest="warmup_s",
        metavar="DURATION",
        type=cli.seconds,
        default=0.3,
        help="load before each slice's measured window, not counted (default: 0.3s); each "
        f"scenario also starts with {INITIAL_WARMUP_S:g} s of each app alone, not counted",
    )
    p.add_argument(
        "--delay-ms",
        type=int,
        default=100,
        help="delay of each upstream and db call (default: 100)",
    )
    p.add_argument(
        "--max-ratio",
        type=float,
        default=1.10,
        help="largest lab/floor CPU per request accepted (default: 1.10)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("results"),
        help="parent folder of the results/<time>-bench-floor/ folder (default: results)",
    )
    args = p.parse_args(argv)
    if args.users < 1 or args.rounds < 1 or args.starts < 1:
        p.error("--users, --rounds and --starts must be at least 1")
    if args.rounds < args.starts:
        p.error("--rounds must be at least --starts: each start measures one round or more")
    if args.max_ratio <= 0:
        p.error("--max-ratio must be positive")
    return args


class _Timespec(ctypes.Structure):
    _fields_ = (("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long))


_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


def process_cpu_s(pid: int) -> float:
    """CPU time of every thread of process `pid`, to the nanosecond (its CPU-time clock, as
    clock_getcpuclockid(3) gives it); psutil's ticks of 10 ms elsewhere. A 3 s window of a
    server at 30% of a core holds about 0.9 s: ticks alone would move a ratio by a few %."""
    if _LIBC is not None:
        clock, ts = ctypes.c_int(), _Timespec()
        if _LIBC.clock_getcpuclockid(pid, ctypes.byref(clock)) == 0 and (
            _LIBC.clock_gettime(clock.value, ctypes.byref(ts)) == 0
        ):
            return float(ts.tv_sec + ts.tv_nsec / 1e9)
    return float(sum(psutil.Process(pid).cpu_times()[:2]))


def cpu_seconds(pid: int) -> float:
    """CPU time of a process and its descendants (offload's CPU workers)."""
    total = process_cpu_s(pid)
    for child in psutil.Process(pid).children(recursive=True):
        try:
            total += process_cpu_s(child.pid)
        except psutil.Error:  # gone between listing and reading
            continue
    return total


def drain_s(args: argparse.Namespace) -> float:
    """How long to wait for an app's answers after its gate closes: `blocking` answers one
    request per delay, so `users` queued requests take users x delay."""
    return float(args.delay_ms / 1000 * args.users + 5)


def split(rounds: int, starts: int) -> list[int]:
    """`rounds` shared among `starts` as evenly as they go: 20 over 3 -> 7, 7, 6."""
    return [rounds // starts + (i < rounds % starts) for i in range(starts)]


def app_run(name: str, results: Sequence[closed_loop.Interleaved]) -> Run:
    """One app's windows of one scenario over every start, as numbers (round by round, in
    the order of the starts, and in total)."""
    mine = [s for result in results for s in result.slices if s.target == name]
    other: Counter[str] = Counter()
    latencies: list[float] = []
    for s in mine:
        other.update({k: v for k, v in s.window.statuses.items() if k != "200"})
        latencies += s.window.latencies_s
    return run_numbers(
        [s.window.statuses["200"] for s in mine],
        [s.cpu_s for s in mine],
        other,
        sum(s.window.seconds for s in mine),
        latencies,
        others_cpu_s=sum(s.others_cpu_s for s in mine),
        late_starts=sum(not s.quiet for s in mine),
        undrained=sum(result.undrained.get(name, 0) for result in results),
    )


def bench_scenario(apps: dict[str, tuple[ServerProcess, int]], scenario: str, rounds: int,
                   args: argparse.Namespace) -> closed_loop.Interleaved:  # fmt: skip
    path = paths(scenario, args.delay_ms)
    targets = [
        closed_loop.Target(name, HOST, port, path, cpu=functools.partial(cpu_seconds, server.pid))
        for name, (server, port) in apps.items()
    ]

    def check(_round: int) -> None:
        for server, _ in apps.values():
            if not server.is_running():
                raise ServerError(f"{server.name} exited during the run with status "
                                  f"{server.returncode()}:\n{server.log_tail()}")  # fmt: skip

    result = closed_loop.interleave(
        targets, users=args.users, rounds=rounds, slice_s=args.duration_s,
        settle_s=args.warmup_s, warmup_s=INITIAL_WARMUP_S, drain_s=drain_s(args),
        on_round=check,
    )  # fmt: skip
    check(rounds)
    return result


def bench_start(
    lab: NativeLab,
    variant: str,
    rounds: int,
    label: str,
    args: argparse.Namespace,
    log_dir: Path,
    progress: Progress,
    lab_first: bool = True,
) -> dict[str, closed_loop.Interleaved]:
    """One start: the variant's lab API and its floor, fresh, through every scenario."""
    lab_url = lab.start_api(variant, {})
    floor_port = free_port(HOST)
    floor = floor_process(variant, floor_port, log_dir, DATABASE_URL=lab.dsn,
                          UPSTREAM_URL=lab.upstream_url)  # fmt: skip
    lab.supervisor.start(floor, health_timeout=60)
    # The client alternates the order every round from the first app; the starts alternate
    # which app that is, so that over an odd number of rounds per start neither leads more.
    apps = {
        "lab": (lab.apis[variant], int(lab_url.rsplit(":", 1)[1])),
        "floor": (floor, floor_port),
    }
    if not lab_first:
        apps = dict(reversed(apps.items()))
    results = {}
    try:
        for scenario in args.scenarios:
            progress.step(f"{variant} x {scenario}, {label}: {rounds} rounds")
            results[scenario] = bench_scenario(apps, scenario, rounds, args)
    finally:
        lab.stop_api(variant)
        floor.stop()
    return results


def bench(lab: NativeLab, args: argparse.Namespace, log_dir: Path,
          progress: Progress) -> list[Pair]:  # fmt: skip
    """Start after start, every variant in each (a slow stretch of the machine then spreads
    over the variants rather than landing on one); a pair pools its starts' rounds."""
    shares = split(args.rounds, args.starts)
    done: dict[tuple[str, str], list[closed_loop.Interleaved]] = {}
    for k, rounds in enumerate(shares):
        for variant in args.variants:
            label = f"start {k + 1}/{len(shares)}"
            started = bench_start(lab, variant, rounds, label, args, log_dir, progress,
                                  lab_first=k % 2 == 0)  # fmt: skip
            for scenario, result in started.items():
                done.setdefault((variant, scenario), []).append(result)
    pairs = []
    for variant in args.variants:
        for scenario in args.scenarios:
            results = done[variant, scenario]
            p = pair(variant, scenario, app_run("lab", results), app_run("floor", results),
                     args.max_ratio, starts=shares)  # fmt: skip
            if p["ratio"] is not None and p["interval"]:
                lo, hi = p["interval"]
                say(
                    f"{variant} x {scenario}: lab/floor CPU per request {p['ratio']:.3f} (90% "
                    f"interval {lo:.3f}-{hi:.3f}; per start {per_start(p)})"
                )
            pairs.append(p)
    return pairs


def estimate_s(args: argparse.Namespace) -> float:
    """A first guess of the wall time: the slices, each scenario's warm-up, the servers."""
    slices_s = 2 * args.rounds * (args.warmup_s + args.duration_s + 0.03)
    per_start_s = 2 * INITIAL_WARMUP_S * len(args.scenarios) + _VARIANT_OVERHEAD_S
    return float(len(args.variants) * (len(args.scenarios) * slices_s + args.starts * per_start_s))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    command = "python -m loadtest.bench_floor " + shlex.join(sys.argv[1:] if argv is None else argv)
    out = new_dir(args.out, "-bench-floor")
    log_dir = out / "logs"
    started, t0 = now_iso(), time.monotonic()
    m, v = machine(), versions()
    n_pairs = len(args.variants) * len(args.scenarios)
    estimate = estimate_s(args)
    say(
        f"bench-floor: {n_pairs} pairs x {args.rounds} rounds x 2 slices of "
        f"{args.warmup_s + args.duration_s:g} s over {args.starts} starts, about "
        f"{estimate / 60:.1f} min, in {out}"
    )
    steps = n_pairs * args.starts
    progress = Progress(steps, estimate / steps)
    with NativeLab(log_dir=log_dir) as lab:
        pairs = bench(lab, args, log_dir, progress)
    data: dict[str, Any] = {
        "command": command,
        "started": started,
        "wall_s": round(time.monotonic() - t0, 1),
        "options": {
            **{
                k: args.__dict__[k]
                for k in ("users", "rounds", "starts", "warmup_s", "duration_s", "delay_ms")
            },
            "initial_warmup_s": INITIAL_WARMUP_S,
            "drain_s": drain_s(args),
            "quiet_core_share": closed_loop.QUIET_CORE_SHARE,
        },
        "max_ratio": args.max_ratio,
        "machine": m,
        "versions": v,
        "pairs": pairs,
        "passed": all(p["ok"] for p in pairs),
    }
    write_json(out / "results.json", data)
    (out / "report.md").write_text(report_md(data, m, v))
    print(table(pairs))
    print(f"\nwall time {data['wall_s']:.0f} s; report: {out / 'report.md'}")
    bad = failures(pairs, args.max_ratio)
    for line in bad:
        say(f"bench-floor: {line}")
    return 1 if bad else 0
