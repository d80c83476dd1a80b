"""`make bench-floor`: the floor apps match the lab's stack; the gated client loads one server
at a time, in alternating order, and waits for the previous one as it says (against small real
servers in a thread); the ratio's interval; and a real (short) run writes a report whose
numbers add up and whose exit code follows --max-ratio."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import itertools
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from fastapi.routing import APIRoute

from loadtest.analysis.floor_report import bootstrap_interval, pair, run_numbers
from loadtest.orchestrate import closed_loop
from loadtest.orchestrate.bench_floor import parse_args, split
from services import floor, registry
from services.api.contract import ROUTES
from services.api.settings import Settings
from services.lab.netcheck import free_port

ROOT = Path(__file__).resolve().parents[1]
FLOOR_PATHS = ("/items/{item_id}", "/io/upstream", "/io/db")


def test_floor_constants_are_the_lab_defaults() -> None:
    defaults = Settings()
    assert floor.DB_POOL_MAX == defaults.db_pool_max
    assert floor.UPSTREAM_MAX_CONNECTIONS == defaults.upstream_max_connections
    assert floor.UPSTREAM_TIMEOUT_S == defaults.upstream_timeout


@pytest.mark.parametrize("variant", registry.NAMES)
def test_every_variant_has_a_floor_with_the_same_response_models(variant: str) -> None:
    app = importlib.import_module(floor.module_for(variant)).app
    served = {r.path: r for r in app.routes if isinstance(r, APIRoute)}
    lab = {r.path: r for r in ROUTES}
    for path in FLOOR_PATHS:
        assert served[path].response_model is lab[path].model, (variant, path)
    # def where the lab's variant has def (FastAPI's threadpool), async def elsewhere
    variant_module = importlib.import_module(registry.get(variant).module)
    floor_item = served["/items/{item_id}"].endpoint
    assert inspect.iscoroutinefunction(variant_module.read_item) == (
        inspect.iscoroutinefunction(floor_item)
    ), variant


def test_ratio_logic() -> None:
    lab = run_numbers([500, 500], [0.16, 0.17], {}, 2.0, [0.01] * 1000)
    floor_run = run_numbers([500, 500], [0.15, 0.15], {}, 2.0, [0.01] * 1000)
    assert lab["requests"] == 1000 and lab["cpu_s"] == 0.33
    assert lab["cpu_ms_per_request"] == 0.33 and lab["rps"] == 500.0
    p = pair("async", "items", lab, floor_run, 1.10)
    assert p["ok"] and p["round_ratios"] == [pytest.approx(1.067, abs=1e-3), 1.133]
    over = pair("async", "items", lab, floor_run, 1.05)
    assert over["ratio"] == 1.1 and not over["ok"]
    # answers other than 200 make the ratio meaningless: not ok, whatever the limit
    broken = run_numbers([450, 450], [0.16, 0.17], {"503": 100}, 2.0, [0.01] * 900)
    assert pair("async", "items", broken, floor_run, 100)["ratio"] is None
    assert not pair("async", "items", broken, floor_run, 100)["ok"]


def test_interval_spans_the_rounds_and_narrows_with_more_of_them() -> None:
    def runs(lab_cpu: list[float], n: int = 100) -> tuple:  # type: ignore[type-arg]
        return (
            run_numbers([n] * len(lab_cpu), lab_cpu, {}, 1.0, []),
            run_numbers([n] * len(lab_cpu), [0.1] * len(lab_cpu), {}, 1.0, []),
        )

    # every round the same: nothing to resample, the interval is the ratio itself
    assert bootstrap_interval(*runs([0.105] * 10)) == [1.05, 1.05]
    spread = [0.09, 0.10, 0.11, 0.12, 0.13] * 4  # per-round ratios 0.9 to 1.3, total 1.1
    lo, hi = bootstrap_interval(*runs(spread))  # type: ignore[misc]
    assert 0.9 < lo < 1.1 < hi < 1.3
    assert bootstrap_interval(*runs(spread)) == [lo, hi]  # seeded: the same run, the same words
    lo4, hi4 = bootstrap_interval(*runs(spread * 4))  # type: ignore[misc]
    assert hi4 - lo4 < 0.7 * (hi - lo)  # 4x the rounds: about half as wide
    assert pair("async", "items", *runs(spread), 1.10)["interval"] == [lo, hi]


def test_starts_split_the_rounds_and_each_start_has_its_ratio() -> None:
    assert split(20, 3) == [7, 7, 6] and split(4, 4) == [1] * 4 and split(5, 1) == [5]
    # two starts of 5 rounds: the first pair of processes costs 1.2 x its floor, the second 1.0
    lab = run_numbers([100] * 10, [0.12] * 5 + [0.10] * 5, {}, 10.0, [])
    floor_run = run_numbers([100] * 10, [0.10] * 10, {}, 10.0, [])
    p = pair("async", "items", lab, floor_run, 1.10, starts=[5, 5])
    assert p["ratio"] == 1.1 and p["starts"] == [5, 5] and p["start_ratios"] == [1.2, 1.0]
    # resampling the rounds alone mixes both starts in every draw; resampling the starts too
    # shows how far another pair of processes could move the ratio: as far as each start
    lo1, hi1 = bootstrap_interval(lab, floor_run)  # type: ignore[misc]
    lo, hi = bootstrap_interval(lab, floor_run, [5, 5])  # type: ignore[misc]
    assert 1.0 < lo1 < hi1 < 1.2 and (lo, hi) == (1.0, 1.2)
    with pytest.raises(ValueError):
        pair("async", "items", lab, floor_run, 1.10, starts=[5, 4])
    assert parse_args([]).starts == 3
    with pytest.raises(SystemExit):
        parse_args(["--rounds", "2", "--starts", "3"])


def test_durations_take_fractions_of_a_second() -> None:
    args = parse_args(["--duration", "500ms", "--warmup", "0.2s"])
    assert (args.duration_s, args.warmup_s, args.rounds) == (0.5, 0.2, 20)
    assert parse_args([]).duration_s == 1.0 and parse_args([]).warmup_s == 0.3
    with pytest.raises(SystemExit):
        parse_args(["--duration", "0s"])


class _Server:
    """A small HTTP/1.1 server on its own loop in a thread: answers 200 after `delay_s` (every
    connection at once, like an awaited upstream), 503 with `Connection: close` on /fail, and
    notes when each request arrived and when its answer left (perf_counter)."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.arrived: list[float] = []
        self.answered: list[float] = []
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            self.server = self.loop.run_until_complete(asyncio.start_server(self._serve, HOST, 0))
            self.port = self.server.sockets[0].getsockname()[1]
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert ready.wait(5)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.arrived.append(time.perf_counter())
                await asyncio.sleep(self.delay_s)
                if b" /fail " in head.split(b"\r\n")[0]:
                    writer.write(b"HTTP/1.1 503 Busy\r\nContent-Length: 4\r\n"
                                 b"Connection: close\r\n\r\nbusy")  # fmt: skip
                    await writer.drain()
                    return
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                self.answered.append(time.perf_counter())
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def target(self, name: str, cpu: object = time.perf_counter,
               path: object = lambda: "/ok") -> closed_loop.Target:  # fmt: skip
        return closed_loop.Target(name, HOST, self.port, path, cpu)  # type: ignore[arg-type]

    def stop(self) -> None:
        async def shut() -> None:
            self.server.close()
            tasks = asyncio.all_tasks() - {asyncio.current_task()}
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shut(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


HOST = "127.0.0.1"
IDLE = float  # a CPU meter that never moves: float() is 0.0, a server using no CPU
# time.perf_counter as a CPU meter: a server using a whole core, never quiet


def _in(times: list[float], window: closed_loop.Window) -> int:
    return sum(window.started <= t <= window.ended for t in times)


def test_one_server_at_a_time_in_alternating_order() -> None:
    a, b = _Server(), _Server()
    try:
        result = closed_loop.interleave(
            [a.target("a"), b.target("b")], users=5, rounds=4, slice_s=0.2, settle_s=0.05,
            warmup_s=0.1, drain_s=2,
        )  # fmt: skip
    finally:
        a.stop()
        b.stop()
    assert [s.target for s in result.slices] == ["a", "b", "b", "a", "a", "b", "b", "a"]
    servers = {"a": a, "b": b}
    for s in result.slices:
        other = servers["b" if s.target == "a" else "a"]
        # the other server's gate was closed and it had answered everything (its meter says
        # busy, so nothing short of that lets the window start): not one of its requests
        assert _in(other.arrived, s.window) == 0, s
        assert s.window.statuses["200"] > 10 and set(s.window.statuses) == {"200"}
        assert len(s.window.latencies_s) == s.window.statuses["200"]
        # ... and answers the window counts are the ones its server sent inside it
        assert abs(_in(servers[s.target].answered, s.window) - s.window.statuses["200"]) <= 5
        assert s.quiet and s.cpu_s == pytest.approx(s.window.seconds, abs=0.01)
    assert result.undrained == {}


@pytest.mark.parametrize("busy", [False, True])
def test_a_window_waits_for_the_previous_server_only_while_it_uses_the_cpu(busy: bool) -> None:
    # `slow` answers after 2 s, like `blocking` working through its queue. Idle (its meter does
    # not move), `fast`'s window starts right after settling though `slow` still owes answers;
    # busy, it waits for them up to drain_s (counted from the close), and says the window
    # started late.
    slow, fast = _Server(delay_s=2.0), _Server()
    cpu = time.perf_counter if busy else IDLE
    try:
        result = closed_loop.interleave(
            [slow.target("slow", cpu=cpu), fast.target("fast")], users=3, rounds=1,
            slice_s=0.2, settle_s=0.15, warmup_s=0.05, drain_s=0.3 if busy else 3,
        )  # fmt: skip
    finally:
        slow.stop()
        fast.stop()
    (window,) = [s for s in result.slices if s.target == "fast"]
    if busy:
        assert not window.quiet and 0.1 <= window.waited_s <= 0.4  # 0.3 s from the close
        assert result.undrained["slow"] > 0  # the final drain gave up after 0.3 s too
    else:
        assert window.quiet and window.waited_s < 0.05  # idle since its gate closed
        assert any(t > window.window.started for t in slow.answered)  # it did owe answers
        assert result.undrained == {}


def test_other_answers_and_client_errors_are_counted_by_name() -> None:
    server = _Server()
    paths = itertools.cycle(["/ok", "/fail"])  # every other request: 503, connection closed
    refused = closed_loop.Target("down", HOST, free_port(HOST), lambda: "/ok", IDLE)
    try:
        result = closed_loop.interleave(
            [server.target("up", path=lambda: next(paths)), refused], users=3, rounds=1,
            slice_s=0.3, settle_s=0.05, warmup_s=0.05, drain_s=1,
        )  # fmt: skip
    finally:
        server.stop()
    up, down = result.slices
    # reconnecting after each close: about as many 200s as 503s, and nothing else
    assert set(up.window.statuses) == {"200", "503"} and up.window.statuses["200"] > 10
    assert abs(up.window.statuses["200"] - up.window.statuses["503"]) <= 3
    assert set(down.window.statuses) == {"ConnectionRefusedError"}


def _bench(out: Path, max_ratio: str) -> subprocess.CompletedProcess[str]:
    cmd = [
        sys.executable, "-m", "loadtest.bench_floor", "--variants", "async", "--scenarios",
        "items", "--users", "5", "--rounds", "3", "--starts", "2", "--duration", "300ms",
        "--warmup", "0.1s",
        "--max-ratio", max_ratio, "--out", str(out),
    ]  # fmt: skip
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=110, check=False)


def _results(out: Path) -> tuple[dict, str]:  # type: ignore[type-arg]
    (folder,) = out.glob("*-bench-floor")
    return json.loads((folder / "results.json").read_text()), (folder / "report.md").read_text()


def test_bench_floor_fails_over_the_limit_and_its_numbers_add_up(tmp_path: Path) -> None:
    done = _bench(tmp_path, "0.01")  # no lab can be within 1% of a hundredth of its floor
    assert done.returncode == 1, done.stderr[-2000:]
    assert "async x items: lab/floor CPU per request" in done.stderr
    data, report = _results(tmp_path)
    assert data["passed"] is False and data["max_ratio"] == 0.01
    assert data["machine"]["cores"] >= 1 and data["versions"]["fastapi"]
    assert data["options"]["rounds"] == 3 and data["options"]["duration_s"] == 0.3
    (p,) = data["pairs"]
    assert (p["variant"], p["scenario"]) == ("async", "items")
    for run in (p["lab"], p["floor"]):
        assert run["requests"] > 50 and run["other"] == {}
        assert run["cpu_s"] > 0
        assert run["cpu_ms_per_request"] == pytest.approx(
            1000 * run["cpu_s"] / run["requests"], rel=1e-3
        )
        assert run["rps"] == pytest.approx(run["requests"] / run["seconds"], rel=1e-2)
        assert 0.9 * 3 * 0.3 <= run["seconds"] <= 3 * 0.3 + 0.3  # three windows of 0.3 s
        assert len(run["round_requests"]) == len(run["round_cpu_s"]) == 3
        assert sum(run["round_requests"]) == run["requests"] and min(run["round_requests"]) > 0
        assert sum(run["round_cpu_s"]) == pytest.approx(run["cpu_s"], abs=1e-3)
        # the other app's gate was closed: it used next to no CPU during this app's windows
        # (both loaded at once, it would use most of a core)
        assert run["others_core_share"] < 0.1
        assert run["late_starts"] == 0 and run["undrained"] == 0
    ratio = p["lab"]["cpu_ms_per_request"] / p["floor"]["cpu_ms_per_request"]
    assert p["ratio"] == pytest.approx(ratio, rel=1e-2)
    assert len(p["round_ratios"]) == 3 and p["ok"] is False
    assert p["starts"] == [2, 1] and len(p["start_ratios"]) == 2 and all(p["start_ratios"])
    lo, hi = p["interval"]
    assert 0 < lo <= hi
    assert (
        f"| async | items | {p['lab']['rps']:.0f} | {p['floor']['rps']:.0f} | "
        f"{p['lab']['cpu_ms_per_request']:.3f} | {p['floor']['cpu_ms_per_request']:.3f} | "
        f"{p['ratio']:.3f} | {lo:.3f}-{hi:.3f} | "
        f"{p['start_ratios'][0]:.3f} {p['start_ratios'][1]:.3f} |"
    ) in report
    assert "over the limit" in report and "wall time" in report
    assert "alternate" in report and "bootstrap" in report and "While one app" in report
    assert "2 start(s)" in report and data["options"]["starts"] == 2


def test_bench_floor_passes_under_a_generous_limit(tmp_path: Path) -> None:
    done = _bench(tmp_path, "100")
    assert done.returncode == 0, done.stderr[-2000:]
    data, report = _results(tmp_path)
    assert data["passed"] is True and "every ratio <= 100.00" in report
