"""The server watch (/runtime polls, bystander probe, CSVs), the Server tab and chart page
(Flask's test client on a stand-in for Locust's WebUI), the first screen's template arguments,
and headless Locust runs that write the CSVs against real APIs.

Nothing here imports Locust (it would monkey-patch pytest with gevent): Locust runs in
subprocesses, and the watch runs on real threads.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, jsonify

from loadtest.generator import server_tab
from loadtest.generator.first_screen import FIRST_OPTIONS, first_screen
from loadtest.generator.scenarios import SCENARIOS
from loadtest.generator.server_watch import (
    BYSTANDER_COLUMNS,
    SERVER_COLUMNS,
    Watch,
    percentile,
)
from services.lab.netcheck import free_port

REPO_ROOT = Path(__file__).resolve().parents[1]
# Pinned by the reports (loadtest/analysis reads these files): change them together.
EXPECTED_SERVER_COLUMNS = (
    "wall,t,variant,target,ok,timed_out,poll_ms,loop_lag_ms,threadpool_borrowed,"
    "threadpool_total,db_in_use,db_waiting,db_max,in_flight,executor_queued,cpu_pct,"
    "children_cpu_pct,rss_mb,threads,generator_cpu_pct,verdict_kind,verdict"
)
RUNTIME = {
    "variant": "sync", "loop_lag_ms": 1.5, "in_flight": 201,
    "threadpool": {"borrowed": 40, "total": 40},
    "db_pool": {"size": 2, "in_use": 0, "waiting": 0, "max": 20},
    "executor": None,
    "process": {"cpu_pct": 30.0, "children_cpu_pct": 0.0, "rss_mb": 80.5, "threads": 45,
                "children_rss_mb": 0.0, "children": 0},
}  # fmt: skip


# --- a stand-in API: /runtime and /healthz, with a delay the test sets ----------------------


class FakeApi:
    def __init__(self, runtime: dict[str, Any]) -> None:
        self.runtime = runtime
        self.delay_s = 0.0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                time.sleep(fake.delay_s)
                body = json.dumps(fake.runtime if self.path == "/runtime" else {"ok": 1}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: object, client_address: object) -> None:
                pass  # a client that timed out and left: what some tests do on purpose

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_api() -> Iterator[Callable[..., FakeApi]]:
    started: list[FakeApi] = []

    def start(**runtime: Any) -> FakeApi:
        api = FakeApi({**RUNTIME, **runtime})
        started.append(api)
        return api

    yield start
    for api in started:
        api.close()


def rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_a_poll_records_the_runtime_less_itself_and_a_verdict(fake_api: Any) -> None:
    api = fake_api()
    watch = Watch({"sync": api.url}, api.url, generator_cpu=lambda: 12.0, rps=lambda: 199.0)
    poll = watch.poll(watch.watched[api.url])
    assert poll.ok and not poll.timed_out and poll.in_flight == 200
    assert poll.verdict_kind == "threadpool" and poll.verdict.startswith("threadpool: 40/40")
    assert poll.rps == 199.0
    [row] = rows(watch.server_csv())
    assert ",".join(row) == EXPECTED_SERVER_COLUMNS == ",".join(SERVER_COLUMNS)
    assert row["variant"] == "sync" and row["target"] == "1" and row["ok"] == "1"
    assert row["in_flight"] == "200" and row["threadpool_borrowed"] == "40"
    assert row["executor_queued"] == ""  # /runtime gave nothing: an empty cell
    assert row["generator_cpu_pct"] == "12" and row["verdict_kind"] == "threadpool"
    assert abs(float(row["wall"]) - time.time()) < 5


def test_a_poll_without_an_answer_in_time_says_the_loop_is_blocked(fake_api: Any) -> None:
    api = fake_api()
    api.delay_s = 1.0
    watch = Watch({"async": api.url}, api.url, poll_timeout_s=0.3)
    poll = watch.poll(watch.watched[api.url])
    assert poll.timed_out and not poll.ok and poll.verdict_kind == "loop"
    [row] = rows(watch.server_csv())
    assert (row["ok"], row["timed_out"], row["loop_lag_ms"]) == ("0", "1", "")
    assert 250 <= float(row["poll_ms"]) < 1000


def test_bystander_rows_time_each_probe_and_name_failures(fake_api: Any) -> None:
    api = fake_api()
    api.delay_s = 0.05
    watch = Watch({"sync": api.url}, api.url)
    probe = watch.probe()
    assert probe.status == 200 and probe.error == "" and probe.latency_ms >= 50
    dead = Watch({}, f"http://127.0.0.1:{free_port()}")
    failed = dead.probe()
    assert failed.status is None and failed.error and not failed.counted
    [row] = rows(dead.bystander_csv())
    assert tuple(row) == BYSTANDER_COLUMNS and row["status"] == "" and row["error"]
    p50, p99 = watch.recent_bystander()
    assert p50 == p99 == probe.latency_ms


def test_headless_polls_only_the_target_and_a_host_is_named_by_its_runtime(
    fake_api: Any,
) -> None:
    listed, host = fake_api(), fake_api(variant="offload")
    targets = {"sync": listed.url, "offload": "http://127.0.0.1:9"}
    assert set(Watch(targets, listed.url, poll_all=False).watched) == {listed.url}
    watch = Watch(targets, host.url)  # a --host that is no listed URL: polled too
    assert set(watch.watched) == {listed.url, "http://127.0.0.1:9", host.url}
    watch.poll(watch.watched[host.url])
    assert watch.watched[host.url].variant == "offload (host)"  # offload is listed already


def test_the_watch_polls_and_probes_on_its_own_until_stopped(fake_api: Any) -> None:
    api = fake_api()
    watch = Watch({"sync": api.url}, api.url, poll_every_s=0.1, probe_every_s=0.05)
    watch.start()
    time.sleep(0.6)
    watch.stop()
    time.sleep(0.2)
    polls, probes = rows(watch.server_csv()), rows(watch.bystander_csv())
    assert 4 <= len(polls) <= 8 and 8 <= len(probes) <= 14
    assert [float(r["t"]) for r in polls] == sorted(float(r["t"]) for r in polls)
    count = len(probes)
    time.sleep(0.2)
    assert len(rows(watch.bystander_csv())) == count  # stopped


def test_probes_still_waiting_at_the_stop_are_recorded_as_unfinished(fake_api: Any) -> None:
    api = fake_api()
    api.delay_s = 2.0
    watch = Watch({"blocking": api.url}, api.url)
    waiting = threading.Thread(target=watch.probe, daemon=True)
    waiting.start()
    time.sleep(0.5)
    p50, p99 = watch.recent_bystander()  # still waiting: counted with its wait so far
    assert p50 is not None and p99 is not None and 400 <= p50 == p99 < 1000
    watch.stop()
    [row] = rows(watch.bystander_csv())
    assert row["status"] == "" and row["error"] == "unfinished at stop"
    assert 400 <= float(row["latency_ms"]) < 2000  # a lower bound: the time until the stop
    waiting.join()
    assert len(rows(watch.bystander_csv())) == 1  # its late answer is not counted twice
    assert watch.recent_bystander()[1] == pytest.approx(float(row["latency_ms"]), abs=0.01)


def test_write_csv_puts_both_files_beside_the_prefix(fake_api: Any, tmp_path: Path) -> None:
    api = fake_api()
    watch = Watch({"sync": api.url}, api.url)
    watch.poll(watch.watched[api.url])
    watch.probe()
    server, bystander = watch.write_csv(tmp_path / "run" / "sync")
    assert server == tmp_path / "run" / "sync_server.csv"
    assert bystander == tmp_path / "run" / "sync_bystander.csv"
    assert len(rows(server.read_text())) == 1 and len(rows(bystander.read_text())) == 1


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50 and percentile(values, 0.99) == 99
    assert percentile([], 0.5) is None and percentile([7.0], 0.99) == 7


# --- the tab, the chart page, the CSV downloads: Flask's test client ------------------------

# Locust's built UI, found without importing Locust (find_spec does not run the package)
_LOCUST = importlib.util.find_spec("locust")
assert _LOCUST is not None and _LOCUST.origin is not None
LOCUST_DIST = Path(_LOCUST.origin).parent / "webui" / "dist"


class StandInWebUI:
    """What server_tab uses of Locust's WebUI, on a plain Flask app with Locust's index."""

    def __init__(self, template_args: dict[str, Any]) -> None:
        self.app = Flask("stand-in", template_folder=str(LOCUST_DIST))
        self.template_args: dict[str, Any] = {}
        self.fresh = template_args
        self.app.add_url_rule("/", "locust.index", lambda: "Locust's own index")
        self.app.add_url_rule(
            "/stats/requests", "stats", lambda: jsonify({"stats": [], "state": "running"})
        )

    def update_template_args(self) -> None:
        self.template_args.update(self.fresh)

    def auth_required_if_enabled(self, view: Callable[..., Any]) -> Callable[..., Any]:
        return view


@pytest.fixture
def tab(fake_api: Any) -> Iterator[tuple[Any, Watch]]:
    idle = {"loop_lag_ms": 3.0, "in_flight": 1, "threadpool": {"borrowed": 0, "total": 40}}
    sync, async_ = fake_api(), fake_api(variant="async", **idle)
    watch = Watch({"sync": sync.url, "async": async_.url}, async_.url)
    for watched in watch.watched.values():
        watch.poll(watched)
    watch.probe()
    ui = StandInWebUI(LOCUST_ARGS)
    server_tab.install(ui, lambda: watch)
    yield ui, watch


def test_the_tab_is_declared_in_the_template_args(tab: Any) -> None:
    ui, _ = tab
    assert ui.template_args["extended_tabs"] == [{"title": "Server", "key": "server"}]
    [table] = ui.template_args["extended_tables"]
    keys = [column["key"] for column in table["structure"]]
    assert table["key"] == "server" and keys[:2] == ["variant", "verdict"]
    hrefs = [link["href"] for link in ui.template_args["extended_csv_files"]]
    assert hrefs == ["./server", "./server/server.csv", "./server/bystander.csv"]


def test_stats_requests_carry_one_row_per_variant_loaded_first(tab: Any) -> None:
    ui, _ = tab
    answer = ui.app.test_client().get("/stats/requests").get_json()
    assert answer["state"] == "running"  # Locust's own payload kept
    [extended] = answer["extended_stats"]
    assert extended["key"] == "server"
    data = extended["data"]
    assert [row["variant"] for row in data[:2]] == ["▶ async", "sync"]
    assert [row["name"] for row in data] == sorted(row["name"] for row in data)  # UI sorts
    loaded, other = data[0], data[1]
    assert loaded["verdict"].startswith("none: below capacity") and loaded["in_flight"] == "0 / 0"
    assert other["verdict"].startswith("threadpool: 40/40") and other["tokens"] == "40/40"
    assert other["in_flight"] == "200 / 200" and other["rss"] == "80"
    assert "bystander" in loaded and "bystander" not in other  # probed: the loaded one only
    assert "/server" in data[-1]["verdict"]


def test_chart_page_data_and_csv_are_served(tab: Any) -> None:
    ui, _ = tab
    client = ui.app.test_client()

    def get(path: str) -> Any:
        return client.get(path, buffered=True)  # read, and send_from_directory's file closed

    page = get("/server")
    assert page.status_code == 200 and b"uPlot.iife.min.js" in page.data
    assert re.search(rb"(src|href)=[\"']?(https?:)?//", page.data) is None  # offline: no CDN
    script = get("/server/static/uplot/uPlot.iife.min.js")
    assert script.status_code == 200 and len(script.data) > 10_000
    assert get("/server/static/uplot/LICENSE").data.startswith(b"The MIT License")
    data = get("/server/data.json").get_json()
    assert data["loaded"] == "async" and set(data["variants"]) == {"sync", "async"}
    series = data["variants"]["sync"]
    assert series["tokens_busy"] == [40.0] and series["in_flight"] == [200.0]
    download = get("/server/server.csv")
    assert download.mimetype == "text/csv"
    assert "attachment" in download.headers["Content-Disposition"]
    assert download.data.decode().splitlines()[0] == EXPECTED_SERVER_COLUMNS
    assert get("/server/bystander.csv").data.decode().startswith("wall,t,latency_ms")


def test_without_a_run_the_tab_says_so(fake_api: Any) -> None:
    ui = StandInWebUI(LOCUST_ARGS)
    server_tab.install(ui, lambda: None)
    client = ui.app.test_client()
    [extended] = client.get("/stats/requests").get_json()["extended_stats"]
    assert extended["data"][0]["verdict"] == "starts with the next run"
    assert client.get("/server/data.json").get_json()["variants"] == {}


# --- the first screen -------------------------------------------------------------------------

ALL_CLASSES = sorted(s.user_class for s in SCENARIOS.values())
LOCUST_ARGS: dict[str, Any] = {  # what Locust's update_template_args gives for the lab
    "host": "",
    "missing_host_warning": True,
    "override_host_warning": False,
    "available_user_classes": ALL_CLASSES,
    "users": {name: {"host": None, "weight": 1, "fixed_count": 0, "tasks": ["t"]}
              for name in ALL_CLASSES},
    "extra_options": {name: {"default_value": 1} for name in
                      ("baseline_users", "delay_ms", "max_users", "step_seconds", "step_users",
                       "variant", "work")},
}  # fmt: skip


def test_first_screen_ticks_one_scenario_and_lists_it_first() -> None:
    args = first_screen(LOCUST_ARGS)
    assert args["available_user_classes"] == ["UpstreamUser"]
    assert next(iter(args["users"])) == "UpstreamUser" and sorted(args["users"]) == ALL_CLASSES
    assert args["users"]["UpstreamUser"]["host"].startswith("GET /io/upstream?delay_ms=")
    assert "Variant" in args["users"]["UpstreamUser"]["host"]
    assert args["users"]["ItemsUser"]["host"] == "GET /items/<id>"


def test_first_screen_has_no_notice_asking_for_a_host_and_the_variant_first() -> None:
    args = first_screen(LOCUST_ARGS)
    assert args["missing_host_warning"] is False and args["override_host_warning"] is True
    assert args["host"] == ""
    assert tuple(args["extra_options"])[:3] == FIRST_OPTIONS
    assert set(args["extra_options"]) == set(LOCUST_ARGS["extra_options"])
    given = first_screen({**LOCUST_ARGS, "host": "http://example:1"})
    assert given["missing_host_warning"] is True  # a Host given on the command line: as Locust


def test_the_index_renders_locusts_page_with_the_first_screen_args_in_order(tab: Any) -> None:
    ui, _ = tab
    page = ui.app.test_client().get("/").data.decode()
    assert "./assets/" in page  # Locust's own index.html
    args = json.loads(page.split("window.templateArgs = ", 1)[1].split("\n", 1)[0])
    assert next(iter(args["users"])) == "UpstreamUser"  # not sorted away by tojson
    assert next(iter(args["extra_options"])) == "variant"
    assert args["extended_tabs"][0]["key"] == "server"


# --- headless Locust writes both CSVs ---------------------------------------------------------


def locust_csv_run(api: str, variant: str, out: Path, *args: str, seconds: int = 8) -> Path:
    prefix = out / variant
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCUST_")}
    env["LAB_TARGETS"] = f"{variant}={api}"
    cmd = [
        sys.executable, "-m", "locust", "--config", "loadtest/locust.conf", "--headless",
        "-t", f"{seconds}s", "--variant", variant, "--csv", str(prefix), "--only-summary", *args,
    ]  # fmt: skip
    proc = subprocess.run(
        cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=90, check=False
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return prefix


def bystander_p99(prefix: Path) -> float:
    probes = rows(Path(f"{prefix}_bystander.csv").read_text())
    latencies = [float(r["latency_ms"]) for r in probes if r["status"] == "200"]
    assert len(latencies) >= 20, probes[:5]
    p99 = percentile(latencies, 0.99)
    assert p99 is not None
    return p99


def test_headless_runs_write_server_and_bystander_csv(start_api: Any, lab_tmp: Path) -> None:
    """The article's warning, measured: CPU in async def stalls a bystander; offloaded, not."""
    out = lab_tmp / "server-watch"
    load = ("-u", "20", "-r", "20", "--work", "20", "CpuPythonUser")
    p99 = {}
    for variant in ("async", "offload"):
        prefix = locust_csv_run(start_api(variant), variant, out, *load)
        polls = rows(Path(f"{prefix}_server.csv").read_text())
        assert ",".join(polls[0]) == EXPECTED_SERVER_COLUMNS
        assert len(polls) >= 5, polls
        assert {(r["variant"], r["target"]) for r in polls} == {(variant, "1")}  # only the target
        assert all(r["verdict"] and r["verdict_kind"] for r in polls)
        assert all(0 <= float(r["t"]) < 15 for r in polls)
        p99[variant] = bystander_p99(prefix)
        if variant == "async":  # the loop computes: /runtime answers late (or not in 2.5 s)
            assert {r["verdict_kind"] for r in polls} & {"loop", "cpu"}, polls
        else:  # the loop is free: every poll answered, with the load inside the server
            assert all(r["ok"] == "1" for r in polls), polls
            assert max(float(r["in_flight"]) for r in polls) >= 10, polls
    assert p99["async"] > 5 * p99["offload"], p99
