"""`python -m loadtest.drill`: steady load, one fault at a known moment, the rules checked per
variant, results/<time>-drill-<name>/ written (report.md, results.json, a timeline PNG each).

Variants run one after another, each alone: a fault's effect on one is then its own, and no
variant's load steals the 2 cores another is measured on.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from loadtest.analysis import server_csv
from loadtest.analysis.drill_report import report_md, timeline_chart
from loadtest.analysis.drill_rules import (
    Request,
    Verdict,
    Window,
    admitted_p99,
    definite,
    durability,
    judge,
    normal_p99,
    read_requests,
)
from loadtest.generator.drill_csv import CONNECT_TIMEOUT_S, requests_path, started_path
from loadtest.generator.scenarios import SCENARIOS
from loadtest.orchestrate.labs import ComposeLab, Lab, NativeLab
from loadtest.orchestrate.run import REPO_ROOT, Load, RunOutcome, RunSpec, run_locust
from services import registry
from services.api.server import graceful_timeout
from services.api.settings import Settings

DRILL_LOCUSTFILE = REPO_ROOT / "loadtest" / "generator" / "drill_locust.py"
SHAPE_FILE = REPO_ROOT / "loadtest" / "generator" / "drill_shape.py"
LOCUST_STARTUP_LIMIT_S = 60.0  # Locust's import and spawn; the fault waits for the load's start


@dataclass(frozen=True)
class Drill:
    name: str
    what: str
    scenarios: tuple[str, ...]  # scenario names: their users split the load evenly
    touched: tuple[str, ...] | None  # request names the fault may fail (None: all)
    fault_s: float  # default length of the fault (0: as long as the action takes)


DB_TOUCHED = ("/items/[id]", "/orders", "/io/db")
MIX = ("items", "upstream", "write", "cpu-native")
DRILLS = {
    d.name: d
    for d in (
        Drill("db-restart", "PostgreSQL restarts mid-run", MIX, DB_TOUCHED, 0),
        Drill("db-down", "PostgreSQL stopped, then started", MIX, DB_TOUCHED, 20),
        Drill("upstream-down", "the upstream stopped, then started", MIX, ("/io/upstream",), 10),
        Drill("upstream-slow", "the upstream's latency x10", MIX, ("/io/upstream",), 15),
        Drill("upstream-errors", "the upstream answers 20 % 503", MIX, ("/io/upstream",), 15),
        Drill("sigterm", "SIGTERM to the API process, then a fresh one", MIX, None, 0),
        Drill("overload", "10x the users, then normal load", MIX, None, 60),
    )
}


def _bounds(drill: Drill, s: Settings, delay_ms: int) -> dict[str, Any]:
    """Recovery allowance and the longest response a drill tolerates, from the timeouts."""
    db = s.db_acquire_timeout + s.db_connect_timeout
    grace = graceful_timeout(s)
    if drill.name.startswith("db"):
        allowance, why = db, "DB_ACQUIRE_TIMEOUT + DB_CONNECT_TIMEOUT"
    elif drill.name.startswith("upstream"):
        allowance, why = s.upstream_timeout, "UPSTREAM_TIMEOUT"
    elif drill.name == "sigterm":
        allowance, why = 2.0, "2 s for clients to reconnect to the fresh process"
    else:
        allowance, why = 10.0, "10 s for the queue built during the overload to drain"
    bound_s = max(db, s.upstream_timeout) + delay_ms / 1000 + 2
    bound_why = "max(acquire + connect, UPSTREAM_TIMEOUT) + delay_ms + 2 s"
    if drill.name in ("sigterm", "overload"):
        bound_s, bound_why = grace, "the graceful-shutdown period (services/api/server.py)"
    if drill.name == "overload":
        bound_why += (
            ", for the run with API_LIMIT_CONCURRENCY; without it nothing configured bounds the "
            "queue, and the longest response is reported against Little's law instead"
        )
    return {
        "allowance_s": allowance,
        "allowance_why": why,
        "longest_bound_ms": bound_s * 1000,
        "bound_why": bound_why,
        "recovery_limit_s": allowance + 5,
        "grace_s": grace,
    }


@dataclass(frozen=True)
class DrillSpec(RunSpec):
    """RunSpec with several user classes and the drill's own arguments."""

    user_classes: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()
    shape: bool = False

    def command(self) -> list[str]:
        cmd = super().command()
        at = cmd.index(self.scenario.user_class)
        cmd[at : at + 1] = [] if self.shape else list(self.user_classes)
        if self.shape:  # the shape needs the users' classes in its locustfile list only
            cmd[cmd.index(str(self.locustfile))] = f"{self.locustfile},{SHAPE_FILE}"
        return cmd + list(self.extra)


def _readyz(url: str) -> tuple[str, float]:
    """/readyz's status and body as the drill saw it, and how long the answer took. The wait is
    generous: behind a blocked loop the probe queues with the load (seconds on `blocking`), and
    the rule is about what it says, not how fast; the time is reported."""
    t0 = time.monotonic()
    try:
        r = httpx.get(url + "/readyz", timeout=30, trust_env=False)
        answer = f"{r.status_code} {r.text[:2000]}"
    except httpx.HTTPError as exc:
        answer = f"no answer: {type(exc).__name__}"
    return answer, round(time.monotonic() - t0, 2)


def _names_database(readyz: str) -> bool:
    """A 503 whose checks say the database (and only it) fails."""
    status, _, body = readyz.partition(" ")
    try:
        checks = json.loads(body).get("checks", {})
    except ValueError:
        return False
    return status == "503" and checks.get("database") != "ok" and checks.get("upstream") == "ok"


def _inject(
    drill: Drill, lab: Lab, variant: str, url: str, fault_s: float, grace_s: float
) -> dict[str, Any]:
    """Do the fault; return what it measured (sigterm: the shutdown)."""
    if drill.name == "db-restart":
        lab.db_restart()
    elif drill.name == "db-down":
        lab.db_stop()
        time.sleep(min(3.0, fault_s))
        readyz, took = _readyz(url)
        time.sleep(max(0.0, fault_s - 3.0 - took))
        lab.db_start()
        return {"readyz during the fault": readyz, "readyz answered in s": took}
    elif drill.name == "upstream-down":
        lab.upstream_restart(None, down_s=fault_s)
    elif drill.name in ("upstream-slow", "upstream-errors"):
        env: dict[str, object] = (
            {"MOCK_JITTER": "uniform", "MOCK_JITTER_MS": 3600}  # +1.8 s mean on 200 ms: ~x10
            if drill.name == "upstream-slow"
            else {"MOCK_ERROR_RATE": 0.2}
        )
        lab.upstream_restart(env)
        time.sleep(fault_s)
        lab.upstream_restart(None)
    elif drill.name == "sigterm":
        return asdict(lab.sigterm_api(variant, grace_s))
    elif drill.name == "overload":
        time.sleep(fault_s)  # the shape raises the users at this moment
    return {}


def run_variant(
    drill: Drill,
    lab: Lab,
    variant: str,
    args: argparse.Namespace,
    out: Path,
    label: str,
    env: dict[str, object],
) -> tuple[Verdict, list[Request]]:
    url = lab.start_api(variant, env)
    note = f"drill-{out.name}-{label}-{secrets.token_hex(3)}"
    prefix = out / label
    bounds = _bounds(drill, Settings(), args.delay_ms)
    run_s = int(args.fault_at + args.fault_s + args.after)
    overload = drill.name == "overload"
    extra = ["--order-note", note, "--delay-ms", str(args.delay_ms), "--work", str(args.work)]
    if overload:
        extra += [
            "--overload-at-s",
            str(args.fault_at),
            "--overload-s",
            str(args.fault_s),
            "--overload-users",
            str(args.users * args.factor),
            "--total-s",
            str(run_s),
            "--overload-classes",
            ",".join(SCENARIOS[s].user_class for s in drill.scenarios),
        ]
    spec = DrillSpec(
        scenario=SCENARIOS[drill.scenarios[0]],
        url=url,
        load=Load(
            users=args.users,
            spawn_rate=args.users,
            duration_s=run_s,
            stop_timeout_s=10,
            delay_ms=args.delay_ms,
            work=args.work,
        ),
        prefix=prefix,
        locustfile=DRILL_LOCUSTFILE,
        user_classes=tuple(SCENARIOS[s].user_class for s in drill.scenarios),
        extra=tuple(extra),
        shape=overload,
    )
    outcome: list[RunOutcome] = []
    thread = threading.Thread(target=lambda: outcome.append(run_locust(spec, monitor=False)))
    started_path(prefix).unlink(missing_ok=True)
    thread.start()
    try:
        _wait_for_load(started_path(prefix), thread)
        time.sleep(args.fault_at)
        start = time.time()
        measured = _inject(drill, lab, variant, url, args.fault_s, bounds["grace_s"])
        end = time.time()
        alive_after = lab.api_alive(variant)
    finally:
        thread.join()
    crashed = not lab.api_alive(variant) or not alive_after
    lab.stop_api(variant)
    requests = read_requests(requests_path(prefix))
    if overload and requests:  # the shape counts from Locust's own start: its first request
        start = min(r.start for r in requests) + args.fault_at
        end = start + args.fault_s
        if not env.get("API_LIMIT_CONCURRENCY"):
            queue = _queue_bound(requests, start, end, args.users * args.factor)
            bounds["longest_bound_ms"] = float("inf")
            bounds["bound_why"] = (
                "none: without admission control nothing configured bounds the queue"
            )
    if drill.name == "sigterm":
        end = _fresh_answer(requests, measured, end)
    window = Window(start, end, bounds["allowance_s"])
    v = judge(
        variant=label,
        requests=requests,
        window=window,
        longest_bound_ms=bounds["longest_bound_ms"],
        touched=drill.touched,
        normal_p99_ms=normal_p99(requests, start),
        recovery_limit_s=bounds["recovery_limit_s"],
    )
    v.extra.update({"fault": f"{start:.3f} .. {end:.3f} ({end - start:.1f} s)", "order note": note})
    v.extra["longest response bound"] = bounds["bound_why"]
    if overload and not env.get("API_LIMIT_CONCURRENCY") and requests:
        # Unshed, the wait in the queue is not bounded by anything configured: measured against
        # Little's law and reported, while the run with API_LIMIT_CONCURRENCY keeps the rule.
        v.extra["longest response vs the queue (no admission control)"] = queue["why"]
        if v.longest_ms > queue["longest_ms"]:
            v.extra["starvation"] = (
                f"the longest response ({v.longest_ms / 1000:.0f} s) waited more than twice the "
                "queue's mean wait: some connections were served far later than others"
            )
    server = server_csv.read_server(server_csv.server_path(prefix)) or []
    _extra_rules(drill, v, requests, measured, window, server, crashed, bounds["grace_s"])
    if any(r.note for r in requests):
        d = durability(requests, lab.orders(note))
        v.durability = d.counts()
        unknown = Counter(
            r.code for r in requests if r.note and r.failed and not definite(r.status)
        )
        v.extra["writes with unknown outcome (codes)"] = dict(unknown)
        v.extra["rows of writes with unknown outcome"] = len(d.extra_unknown)
        if not d.ok:
            v.broken.append(f"durability: {d.counts()}")
            v.extra["durability problems"] = {
                "missing": d.missing[:10],
                "duplicates": d.duplicates[:10],
                "extra_definite": d.extra_definite[:10],
            }
    codes_500 = sum(r.status == 500 for r in requests)
    if codes_500:
        v.extra["undocumented 500s (contract gap: a DB fault should be 503)"] = codes_500
    chart = f"timeline-{label}.png"
    marks = {"SIGTERM": measured["signalled"]} if measured.get("signalled") else {}
    timeline_chart(out / chart, f"{drill.name} on {label}", requests, server, window, marks)
    v.extra["chart"] = chart
    return v, requests


def _wait_for_load(started: Path, locust: threading.Thread) -> None:
    """Until Locust's load has started (its marker file exists): `--fault-at` counts from
    there, so the load after the fault is the `--after` asked for."""
    deadline = time.monotonic() + LOCUST_STARTUP_LIMIT_S
    while not started.exists():
        if not locust.is_alive() or time.monotonic() > deadline:
            raise SystemExit(f"drill: Locust's load did not start (no {started})")
        time.sleep(0.05)


def _fresh_answer(requests: Sequence[Request], measured: dict[str, Any], end: float) -> float:
    """The sigterm fault lasts until the fresh process answers its first request (not until
    its health check passed: behind a blocked loop that can take many seconds)."""
    exited = measured.get("exited_at") or measured["signalled"]
    fresh = [r.end for r in requests if r.start >= exited and r.status]
    return min(fresh, default=end)


def _queue_bound(
    requests: Sequence[Request], start: float, end: float, users: int
) -> dict[str, Any]:
    """Without admission control nothing configured bounds the wait in the queue: Little's law
    does. With N users and X answers/s, a request waits about N / X; a response longer than
    twice that (or than the timeouts' bound) is a hang, not a queue."""
    answered = sum(1 for r in requests if start <= r.end < end and r.status)
    x = answered / max(end - start, 1e-9)
    queue_s = users / x if x else float("inf")
    return {
        "longest_ms": 2 * queue_s * 1000,
        "why": f"2 x N / X = 2 x {users} users / {x:.1f} req/s = {2 * queue_s:.1f} s "
        "(Little's law: twice the queue's mean wait)",
    }


# Why a request sent after SIGTERM got no answer, when that is the expected outcome: the port
# was closed (refused), or the server closed its idle keep-alive connection as the request was
# on its way (HTTP/1.1's inherent race; the server never read it, the client may retry).
NOT_ACCEPTED = ("ConnectionRefusedError", "HTTPConnectionClosed", "ConnectionResetError")
# Under compose the published port forwards to the container's address: while no container
# has it, a connect fails with EHOSTUNREACH, after the kernel's ARP retries (seconds).
NO_ROUTE = "[Errno 113]"


def _not_accepted(r: Request) -> bool:
    # A timeout within the users' connect timeout (one retry included) was the connect's: the
    # read timeout is 60 s.
    connect_timed_out = (
        "timed out" in r.error and r.response_ms < 2 * CONNECT_TIMEOUT_S * 1000 + 500
    )
    return r.status == 0 and (_cause(r) in NOT_ACCEPTED or NO_ROUTE in r.error or connect_timed_out)


def _cause(r: Request) -> str:
    """The socket error behind a request without an answer, e.g. ConnectionRefusedError."""
    return r.error.split("HTTP 0 ", 1)[-1].split(":")[0] or "no answer"


def _extra_rules(
    drill: Drill,
    v: Verdict,
    requests: Sequence[Request],
    measured: dict[str, Any],
    window: Window,
    server: Sequence[Any],
    crashed: bool,
    grace_s: float,
) -> None:
    rss = [s["rss_mb"] for s in server if s.get("rss_mb") is not None]
    v.extra["peak RSS MB"] = round(max(rss), 1) if rss else None
    if drill.name == "overload":
        if crashed:
            v.broken.append("the API process died during the overload")
        v.extra["during overload"] = admitted_p99(requests, window.start, window.end)
        last = max((r.end for r in requests), default=window.end)
        v.extra["after overload"] = admitted_p99(requests, window.end, last)
        if rss and rss[0] and max(rss) > max(4 * rss[0], rss[0] + 300):
            v.broken.append(f"peak RSS {max(rss):.0f} MB unbounded (start {rss[0]:.0f} MB)")
    if drill.name == "db-down":
        readyz = str(measured.get("readyz during the fault", ""))
        v.extra["/readyz during the fault"] = readyz
        v.extra["/readyz answered in s"] = measured.get("readyz answered in s")
        if not _names_database(readyz):
            v.broken.append("/readyz did not answer 503 with the database check failing")
        quick = (Settings().db_acquire_timeout + Settings().db_connect_timeout + 1) * 1000
        slow = [r for r in requests if r.failed and window.touches(r) and r.response_ms > quick]
        if slow:
            v.broken.append(f"{len(slow)} DB errors slower than acquire + connect + 1 s")
    if drill.name == "sigterm":
        sig = measured["signalled"]
        in_flight = [r for r in requests if r.start < sig < r.end]
        # uvicorn waits for every request it has read; after a clean exit within the grace
        # period, one that got no answer at all was never read: it sat in the socket behind
        # a blocked loop (or a full accept queue) and its connection was closed unanswered.
        clean = measured["exit_code"] == 0 and (measured["drain_s"] or grace_s + 1) <= grace_s
        unread = [r for r in in_flight if clean and _not_accepted(r)]
        accepted = [r for r in in_flight if r not in unread]
        cut = [r for r in accepted if r.failed]
        after = [r for r in requests if sig <= r.start < window.end]
        odd = [r for r in after if r.failed and not _not_accepted(r)]
        v.extra.update(
            {
                "exit code": measured["exit_code"],
                "drain s (SIGTERM -> exit)": measured["drain_s"],
                "port refused after SIGTERM (s)": None
                if measured["refused_at"] is None
                else round(measured["refused_at"] - sig, 2),
                "in flight at SIGTERM": len(in_flight),
                "  never read by the server, closed unanswered": len(unread),
                "  read (accepted), answered": len(accepted) - len(cut),
                "  read (accepted), failed (cut)": len(cut),
                "  longest ms of the accepted": max((r.response_ms for r in accepted), default=0),
                "started after SIGTERM, until the fresh process": len(after),
                "  their outcomes": dict(Counter(r.code if r.status else _cause(r) for r in after)),
            }
        )
        if measured["exit_code"] != 0:
            v.broken.append(f"exit code {measured['exit_code']} (expected 0)")
        if measured["drain_s"] is None or measured["drain_s"] > grace_s:
            v.broken.append(f"did not exit within the grace period ({grace_s} s)")
        drain = measured["drain_s"] or 0
        if measured["refused_at"] is None and drain > 1:
            v.broken.append(f"the port still accepted connections during the {drain} s drain")
        if cut:
            v.broken.append(f"{len(cut)} accepted requests cut by the shutdown")
        if odd:
            kinds = {r.code + " " + r.error[:40] for r in odd}
            v.broken.append(f"{len(odd)} after SIGTERM neither served nor refused: {kinds}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m loadtest.drill",
        description="Steady load, one fault, rules checked per variant: results/<time>-drill-NAME/",
    )
    p.add_argument("drill", choices=list(DRILLS), help="which fault")
    p.add_argument("--variants", default=",".join(registry.NAMES), help="comma-separated")
    p.add_argument("--users", type=int, default=20, help="steady load (users, closed loop)")
    p.add_argument("--fault-at", type=float, default=10, help="seconds of load before the fault")
    p.add_argument("--fault-s", type=float, default=None, help="fault length (drill's default)")
    p.add_argument("--after", type=float, default=20, help="seconds of load after the fault")
    p.add_argument("--factor", type=int, default=10, help="overload: users x this")
    p.add_argument(
        "--limit-concurrency",
        type=int,
        default=None,
        help="overload: API_LIMIT_CONCURRENCY of the second run (default 2 x users)",
    )
    p.add_argument("--delay-ms", type=int, default=200, help="upstream delay of /io/upstream")
    p.add_argument("--work", type=int, default=5, help="CPU work of /cpu (units ~ ms)")
    p.add_argument("--compose", action="store_true", help="drive the `make up` stack instead")
    p.add_argument("--out", type=Path, default=REPO_ROOT / "results")
    args = p.parse_args(argv)
    drill = DRILLS[args.drill]
    if args.fault_s is None:
        args.fault_s = drill.fault_s
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    for v in args.variants:
        registry.get(v)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    drill = DRILLS[args.drill]
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    out = args.out / f"{stamp}-drill-{drill.name}"
    out.mkdir(parents=True, exist_ok=True)
    runs: list[tuple[str, str, dict[str, object]]] = [(v, v, {}) for v in args.variants]
    if drill.name == "overload" and not args.compose:
        limit = args.limit_concurrency or 2 * args.users
        shed: dict[str, object] = {"API_LIMIT_CONCURRENCY": limit}
        runs = []
        for v in args.variants:
            runs += [(v, v, {}), (v, f"{v}-limit{limit}", shed)]
    lab_factory: Callable[[], Any] = (
        ComposeLab if args.compose else (lambda: NativeLab(log_dir=out / "logs"))
    )
    verdicts: list[Verdict] = []
    with lab_factory() as lab:
        for variant, label, env in runs:
            print(f"drill {drill.name}: {label} ...", flush=True)
            v, _ = run_variant(drill, lab, variant, args, out, label, env)
            print(f"  {'ok' if not v.broken else 'BROKEN: ' + '; '.join(v.broken)}", flush=True)
            verdicts.append(v)
    bounds = _bounds(drill, Settings(), args.delay_ms)
    result = {
        "started": stamp,
        "mode": "compose" if args.compose else "native",
        "command": " ".join(["python -m loadtest.drill", *(argv or sys.argv[1:])]),
        "drill": {
            **asdict(replace(drill)),
            "users": args.users,
            "fault_at_s": args.fault_at,
            "fault_s": args.fault_s,
            "run_s": args.fault_at + args.fault_s + args.after,
            "user_classes": [SCENARIOS[s].user_class for s in drill.scenarios],
            **bounds,
        },
        "variants": [{"chart": v.extra.pop("chart", ""), **v.to_json()} for v in verdicts],
    }
    (out / "results.json").write_text(json.dumps(result, indent=2, default=str))
    (out / "report.md").write_text(report_md(result))
    print(f"report: {out / 'report.md'}")
    broken = [v.variant for v in verdicts if v.broken]
    if broken:
        print(f"drill {drill.name}: rules broken by {', '.join(broken)}", file=sys.stderr)
        return 1
    return 0
