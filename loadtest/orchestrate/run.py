"""Run one bounded, headless Locust run as a subprocess, watched while it runs.

Locust stops itself (--run-time, then --stop-timeout for requests in flight); a subprocess
timeout is only the safety net. While it runs, Locust's own CPU is sampled (orchestrate/monitor.py).
The target's side comes from the Locust watcher in the locustfile (generator/server_watch.py):
its PREFIX_server.csv (/runtime polls) and PREFIX_bystander.csv (/healthz probes), read once the
run has ended. A run without them (Locust crashed before writing them) has no server samples,
and measure.py says so in one warning. What to run travels as one `Load` inside a `RunSpec`,
from the command line's arguments to Locust's argv and results.json's options.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from loadtest.analysis import checks, server_csv
from loadtest.analysis.locust_stats import Summary, history, summarize
from loadtest.analysis.records import (
    BystanderSample,
    CpuSample,
    CpuSummary,
    HistoryRow,
    ServerSample,
)
from loadtest.generator import open_loop
from loadtest.generator.scenarios import Scenario
from loadtest.orchestrate.monitor import CpuSampler

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCUSTFILE = REPO_ROOT / "loadtest" / "locustfile.py"
# Locust's start-up and report writing, on top of --run-time and --stop-timeout.
_SAFETY_MARGIN_S = 60
# Load fields that are not Locust's or the run's own (results.json's options leave them out).
_NOT_OPTIONS = ("drain_timeout_s", "max_failure_pct")
# The open loop's fields: in results.json's options only when the run was open-loop.
_OPEN_LOOP = ("arrival_rate", "arrivals", "max_in_flight")


@dataclass(frozen=True)
class Load:
    """How hard and how long to load one target. Field names are the commands' argparse dests,
    so `Load.from_args` needs no list of them."""

    users: int
    spawn_rate: float
    duration_s: int  # measured time, after the warm-up
    warmup_s: int = 0  # the first seconds of the same run, statistics dropped
    delay_ms: int = 200
    work: int = 20
    stop_timeout_s: int = 5
    drain_timeout_s: int = 60
    cpu_warn_pct: float = checks.CPU_WARN_PCT
    max_failure_pct: float = 1.0
    sample_interval_s: float = 0.5
    # open loop (generator/open_loop.py): arrivals per second; 0 = closed loop (`users` users)
    arrival_rate: float = 0.0
    arrivals: open_loop.ArrivalKind = "poisson"
    max_in_flight: int = open_loop.DEFAULT_MAX_IN_FLIGHT

    @property
    def open(self) -> bool:
        return self.arrival_rate > 0

    @classmethod
    def from_args(cls, args: argparse.Namespace, **overrides: Any) -> Load:
        """The fields `args` has, then `overrides`."""
        given: dict[str, Any] = {k: v for k, v in vars(args).items() if k in _FIELDS}
        return cls(**{**given, **overrides})

    def options(self) -> dict[str, object]:
        """The fields results.json records under "options"."""
        skip = _NOT_OPTIONS if self.open else _NOT_OPTIONS + _OPEN_LOOP
        return {k: v for k, v in asdict(self).items() if k not in skip}


_FIELDS = frozenset(f.name for f in fields(Load))


@dataclass(frozen=True)
class RunSpec:
    scenario: Scenario
    url: str
    load: Load
    prefix: Path  # Locust's --csv prefix; the .json, .html and .log sit next to it
    locustfile: Path = LOCUSTFILE

    def command(self) -> list[str]:
        load = self.load
        cmd = [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(self.locustfile),
            "--headless",
            self.scenario.user_class,
            "-u",
            str(load.users),
            "-r",
            f"{load.spawn_rate:g}",
            *self.open_loop_arguments(),
            "-t",
            f"{load.warmup_s + load.duration_s}s",
            "--stop-timeout",
            f"{load.stop_timeout_s}",
            "--host",
            self.url,
            "--csv",
            str(self.prefix),
            "--json-file",
            str(self.prefix),  # Locust appends .json
            "--html",
            f"{self.prefix}.html",
            "--only-summary",
        ]
        # Only the knobs the scenario's request uses: a --work next to an upstream call would
        # only mislead the reader.
        for name in self.scenario.options:
            cmd += ["--" + name.replace("_", "-"), str(getattr(load, name))]
        if load.warmup_s:
            cmd += ["--warmup-s", str(load.warmup_s)]
        return cmd

    def open_loop_arguments(self) -> list[str]:
        load = self.load
        if not load.open:
            return []
        return [
            "--arrival-rate",
            f"{load.arrival_rate:g}",
            "--arrivals",
            load.arrivals,
            "--max-in-flight",
            str(load.max_in_flight),
        ]


@dataclass
class RunOutcome:
    spec: RunSpec
    command: list[str]
    exit_code: int | None
    wall_s: float
    timed_out: bool
    summary: Summary
    history: list[HistoryRow]
    server_samples: list[ServerSample] = field(default_factory=list)
    server_source: str = "none"  # analysis/server_side.SOURCES: "locust" or "none" (no CSV)
    bystander_samples: list[BystanderSample] | None = None  # None: no _bystander.csv
    cpu_samples: list[CpuSample] = field(default_factory=list)
    cpu_busiest: list[float] = field(default_factory=list)
    cpu_summary: CpuSummary | None = None
    locust_warned_cpu: bool = False
    log_text: str = ""
    open_loop_books: dict[str, Any] | None = None  # PREFIX_arrivals.json; None: closed, or none

    def files(self) -> dict[str, str]:
        p = self.spec.prefix
        names = {
            "stats_csv": f"{p}_stats.csv",
            "history_csv": f"{p}_stats_history.csv",
            "failures_csv": f"{p}_failures.csv",
            "json": f"{p}.json",
            "html": f"{p}.html",
            "log": f"{p}.log",
            "server_csv": str(server_csv.server_path(p)),
            "bystander_csv": str(server_csv.bystander_path(p)),
            "arrivals_json": str(open_loop.arrivals_path(p)),
        }
        return {k: v for k, v in names.items() if Path(v).exists()}


def run_locust(spec: RunSpec, monitor: bool = True) -> RunOutcome:
    """Run `spec` to its end; with `monitor`, sample Locust's CPU meanwhile. The target's side is
    the watcher's CSVs, read afterwards."""
    spec.prefix.parent.mkdir(parents=True, exist_ok=True)
    cmd = spec.command()
    log_path = Path(f"{spec.prefix}.log")
    load = spec.load
    sample_interval = load.sample_interval_s
    timeout = load.warmup_s + load.duration_s + load.stop_timeout_s + _SAFETY_MARGIN_S
    start = time.monotonic()
    timed_out = False
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            # its own group: the safety net can stop Locust and anything it forked, nothing else
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        cpu = CpuSampler(proc.pid, sample_interval) if monitor else None
        if cpu is not None:
            cpu.start()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _stop_group(proc)
        except BaseException:  # Ctrl-C: Locust is in its own session and did not get it
            _stop_group(proc)
            raise
        finally:
            if cpu is not None:
                cpu.stop()
    log_text = log_path.read_text(errors="replace")
    summary = summarize(Path(f"{spec.prefix}.json"))
    cpu_during = cpu.during(summary.started_at, summary.ended_at) if cpu else []
    watched = server_csv.read_server(server_csv.server_path(spec.prefix))
    return RunOutcome(
        spec=spec,
        command=cmd,
        exit_code=proc.returncode,
        wall_s=round(time.monotonic() - start, 2),
        timed_out=timed_out,
        summary=summary,
        history=history(Path(f"{spec.prefix}_stats_history.csv")),
        server_samples=watched or [],
        server_source="none" if watched is None else "locust",
        bystander_samples=server_csv.read_bystander(server_csv.bystander_path(spec.prefix)),
        cpu_samples=cpu.samples if cpu else [],
        cpu_busiest=[s["busiest_pct"] for s in cpu_during],
        cpu_summary=CpuSampler.summary(cpu_during) if cpu else None,
        locust_warned_cpu="CPU usage above" in log_text,
        log_text=log_text,
        open_loop_books=_read_arrivals(spec.prefix) if load.open else None,
    )


def _read_arrivals(prefix: Path) -> dict[str, Any] | None:
    path = open_loop.arrivals_path(prefix)
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM lets Locust write its reports; SIGKILL if it does not exit soon after."""
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
