"""`python -m loadtest.bench_floor` (`make bench-floor`): each variant against the stack's floor.

For each variant, on free loopback ports next to an embedded PostgreSQL and the mock upstream:
the lab's API (`python -m services.api`) and its floor app (`python -m services.floor`, the same
framework, drivers, client, response models and server flags, none of the lab's extras). Each
scenario loads both the same way, one after the other (the order alternates between scenarios),
with a closed-loop client (orchestrate/closed_loop.py). What counts is the server process's CPU
time over the measured window per request completed in it. Writes results/<time>-bench-floor/
(report.md, results.json, the servers' logs) and exits 1 when a lab/floor ratio is above
--max-ratio (or a run could not be measured: errors, no requests).
"""

from __future__ import annotations

import argparse
import ctypes
import random
import shlex
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from loadtest.analysis.floor_report import Pair, Run, failures, pair, report_md, run_numbers, table
from loadtest.analysis.machine import machine, versions
from loadtest.analysis.outputs import new_dir, now_iso, say, write_json
from loadtest.orchestrate import cli, closed_loop
from loadtest.orchestrate.labs import HOST, NativeLab
from services import registry
from services.lab.netcheck import ServerError, free_port
from services.lab.processes import floor_process
from services.lab.procs import ServerProcess

N_ITEMS = 100_000  # seeded by services/db/
SCENARIOS = ("items", "upstream", "db")
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
    p.add_argument("--users", type=int, default=50, help="connections per run (default: 50)")
    p.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="runs per app and scenario, alternating lab and floor (default: 2)",
    )
    p.add_argument(
        "--duration",
        dest="duration_s",
        metavar="DURATION",
        type=cli.positive_duration,
        default=3,
        help="measured time per run, e.g. 5s (default: 3s)",
    )
    p.add_argument(
        "--warmup",
        dest="warmup_s",
        metavar="DURATION",
        type=cli.duration,
        default=1,
        help="load before each measured window, not counted (default: 1s)",
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
    if args.users < 1 or args.rounds < 1:
        p.error("--users and --rounds must be at least 1")
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


@dataclass
class Tally:
    """One app's runs of one scenario, added up over the rounds."""

    requests: int = 0
    other: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    cpu_s: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    per_round: list[float | None] = field(default_factory=list)  # CPU ms per request

    def run(self) -> Run:
        return run_numbers(self.requests, self.other, self.seconds, self.cpu_s, self.latencies_s)


def measure(server: ServerProcess, port: int, path: Callable[[], str], args: argparse.Namespace,
            tally: Tally) -> None:  # fmt: skip
    marks: list[float] = []

    def mark() -> None:
        marks.append(cpu_seconds(server.pid))

    window = closed_loop.run(
        HOST, port, path, users=args.users, warmup_s=args.warmup_s,
        duration_s=args.duration_s, at_start=mark, at_end=mark,
        drain_s=args.delay_ms / 1000 * args.users + 5,
    )  # fmt: skip
    if not server.is_running():
        raise ServerError(f"{server.name} exited during the run with status "
                          f"{server.returncode()}:\n{server.log_tail()}")  # fmt: skip
    ok = window.statuses["200"]
    tally.requests += ok
    tally.other.update({k: v for k, v in window.statuses.items() if k != "200"})
    tally.seconds += window.seconds
    tally.cpu_s += marks[1] - marks[0]
    tally.latencies_s += window.latencies_s
    tally.per_round.append(1000 * (marks[1] - marks[0]) / ok if ok else None)


def bench_variant(lab: NativeLab, variant: str, args: argparse.Namespace, log_dir: Path,
                  step: Callable[[str], None]) -> list[Pair]:  # fmt: skip
    lab_url = lab.start_api(variant, {})
    floor_port = free_port(HOST)
    floor = floor_process(variant, floor_port, log_dir, DATABASE_URL=lab.dsn,
                          UPSTREAM_URL=lab.upstream_url)  # fmt: skip
    lab.supervisor.start(floor, health_timeout=60)
    apps = {
        "lab": (lab.apis[variant], int(lab_url.rsplit(":", 1)[1])),
        "floor": (floor, floor_port),
    }
    pairs = []
    try:
        for scenario in args.scenarios:
            tallies = {"lab": Tally(), "floor": Tally()}
            # lab, floor, floor, lab, ...: a drift of the machine (the other users of its
            # cores come and go) favours neither side.
            for r in range(args.rounds):
                for name in ("lab", "floor") if r % 2 == 0 else ("floor", "lab"):
                    step(f"{variant} x {scenario} ({name}, round {r + 1}/{args.rounds})")
                    server, port = apps[name]
                    measure(server, port, paths(scenario, args.delay_ms), args, tallies[name])
            lab_t, floor_t = tallies["lab"], tallies["floor"]
            rounds = [
                round(a / b, 3) if a is not None and b else None
                for a, b in zip(lab_t.per_round, floor_t.per_round, strict=True)
            ]
            pairs.append(pair(variant, scenario, lab_t.run(), floor_t.run(), args.max_ratio,
                              rounds))  # fmt: skip
    finally:
        lab.stop_api(variant)
        floor.stop()
    return pairs


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    command = "python -m loadtest.bench_floor " + shlex.join(sys.argv[1:] if argv is None else argv)
    out = new_dir(args.out, "-bench-floor")
    log_dir = out / "logs"
    started, t0 = now_iso(), time.monotonic()
    m, v = machine(), versions()
    total = len(args.variants) * len(args.scenarios) * 2 * args.rounds
    per_run = args.warmup_s + args.duration_s + 0.5
    estimate = total * per_run + len(args.variants) * _VARIANT_OVERHEAD_S
    say(f"bench-floor: {total} runs of {per_run:g} s, about {estimate / 60:.1f} min, in {out}")
    done = 0

    def step(label: str) -> None:
        nonlocal done
        done += 1
        say(f"[{done}/{total}] {label}")

    pairs: list[Pair] = []
    with NativeLab(log_dir=log_dir) as lab:
        for variant in args.variants:
            pairs += bench_variant(lab, variant, args, log_dir, step)
    data: dict[str, Any] = {
        "command": command,
        "started": started,
        "wall_s": round(time.monotonic() - t0, 1),
        "options": {
            k: args.__dict__[k] for k in ("users", "rounds", "warmup_s", "duration_s", "delay_ms")
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
