"""The Server tab, its live chart page and CSV downloads in Locust's web UI, from a Watch.

Only what Locust's web UI supports: template arguments (`extended_tabs`, `extended_tables`,
`extended_csv_files`), rows added to `/stats/requests` under `extended_stats`, and Flask routes
on its app. No Locust import (the tests use Flask's test client without gevent's patching).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from flask import Flask, Response, request, send_from_directory

from loadtest.generator.first_screen import first_screen
from loadtest.generator.server_watch import Poll, Watch, Watched

TAB_KEY = "server"
STATIC = Path(__file__).parent / "static"
CHART_PATH = "/server"
SERVER_CSV_PATH = "/server/server.csv"
BYSTANDER_CSV_PATH = "/server/bystander.csv"
DATA_PATH = "/server/data.json"

# Keys are snake_case on both sides: the UI camel-cases the structure's keys and the rows' alike.
COLUMNS = (
    ("variant", "Variant (▶ loaded)"),
    ("verdict", "What limits throughput"),
    ("loop_lag", "Loop lag ms now / peak"),
    ("tokens", "Threadpool tokens busy / total"),
    ("db_pool", "DB pool in use / waiting"),
    ("in_flight", "In flight now / peak"),
    ("cpu", "API CPU % now / peak"),
    ("rss", "RSS MB"),
    ("bystander", "Bystander /healthz ms p50 / p99 (10 s)"),
    ("bystander_peak", "Bystander peak p99 ms"),
)


class WebUI(Protocol):
    """What this module uses of locust.web.WebUI."""

    template_args: dict[str, Any]

    @property
    def app(self) -> Flask | None: ...

    def update_template_args(self) -> None: ...

    def auth_required_if_enabled(self, view_func: Callable[..., Any]) -> Callable[..., Any]: ...


def tab_template_args() -> dict[str, Any]:
    """The tab's declaration: Locust's UI shows a table of `extended_stats[key=server]`."""
    return {
        "extended_tabs": [{"title": "Server", "key": TAB_KEY}],
        "extended_tables": [
            {"key": TAB_KEY, "structure": [{"key": k, "title": t} for k, t in COLUMNS]}
        ],
        # Locust lists these as links on its "Download Data" tab: the only clickable links an
        # extension can add (table cells are plain text).
        "extended_csv_files": [
            {"href": f".{CHART_PATH}", "title": "Server charts (live page: loop lag, tokens, CPU)"},
            {"href": f".{SERVER_CSV_PATH}", "title": "Download server CSV (/runtime polls)"},
            {"href": f".{BYSTANDER_CSV_PATH}", "title": "Download bystander CSV (/healthz probe)"},
        ],
    }


def _n(value: float | None, unit: str = "") -> str:
    return "-" if value is None else f"{value:.0f}{unit}"


def _pair(now: float | None, peak: float | None) -> str:
    return f"{_n(now)} / {_n(peak)}"


def variant_row(watched: Watched, watch: Watch) -> dict[str, str]:
    """One row of the tab: the last poll of a variant, and its peaks over the run."""
    last: Poll | None = watched.polls[-1] if watched.polls else None
    name = f"▶ {watched.variant}" if watched.target else watched.variant
    row = {"name": watched.variant, "variant": name}
    if last is None:
        return {**row, "verdict": "waiting for the first /runtime answer"}
    lag = "no answer" if last.timed_out else _n(last.value("loop_lag_ms"))
    cpu = _n(last.value("process", "cpu_pct"))
    children = last.value("process", "children_cpu_pct")
    executor = (last.runtime or {}).get("executor")
    if children or (isinstance(executor, dict) and executor.get("kind") == "process"):
        cpu += f" + {_n(children)} workers"
    row |= {
        "verdict": last.verdict,
        "loop_lag": f"{lag} / {_n(watched.peak_lag_ms)}",
        "tokens": _slash(last.value("threadpool", "borrowed"), last.value("threadpool", "total")),
        "db_pool": _slash(last.value("db_pool", "in_use"), last.value("db_pool", "waiting")),
        "in_flight": _pair(last.in_flight, watched.peak_in_flight),
        "cpu": f"{cpu} / {_n(watched.peak_cpu_pct)}",
        "rss": _n(last.value("process", "rss_mb")),
    }
    if watched.target:
        p50, p99 = watch.recent_bystander()
        row |= {"bystander": _pair(p50, p99), "bystander_peak": _n(watch.peak_bystander_p99)}
    return row


def _slash(a: float | None, b: float | None) -> str:
    return f"{_n(a)}/{_n(b)}"


def tab_rows(watch: Watch | None) -> list[dict[str, str]]:
    """The loaded variant first, then the others in the registry's order."""
    if watch is None:
        return [{"name": "", "variant": "-", "verdict": "starts with the next run"}]
    watched, _ = watch.snapshot()
    watched.sort(key=lambda w: not w.target)  # stable: the registry's order otherwise
    # The UI sorts rows by "name" (not shown): the position, so this order holds.
    rows = [{**variant_row(w, watch), "name": f"{i:02d}"} for i, w in enumerate(watched)]
    rows.append({"name": "99", "variant": "charts:", "verdict": f"{CHART_PATH} (live page)",
                 "loop_lag": "CSV:", "tokens": SERVER_CSV_PATH})  # fmt: skip
    return rows


def chart_data(watch: Watch | None) -> dict[str, Any]:
    """Per variant, the series the chart page draws (x = seconds since the run started)."""
    if watch is None:
        return {"loaded": None, "variants": {}}
    watched, _ = watch.snapshot()
    variants: dict[str, dict[str, list[float | None]]] = {}
    loaded = None
    for w in watched:
        polls = sorted(w.polls, key=lambda p: p.t)  # appended as answers came back
        loaded = w.variant if w.target else loaded
        variants[w.variant] = {
            "t": [round(p.t, 2) for p in polls],
            "rps": [p.rps for p in polls],
            "in_flight": [p.in_flight for p in polls],
            "loop_lag_ms": [p.value("loop_lag_ms") if p.ok else None for p in polls],
            "timeout_ms": [round(p.poll_ms) if p.timed_out else None for p in polls],
            "tokens_busy": [p.value("threadpool", "borrowed") for p in polls],
            "tokens_total": [p.value("threadpool", "total") for p in polls],
            "cpu_pct": [p.value("process", "cpu_pct") for p in polls],
            "children_cpu_pct": [p.value("process", "children_cpu_pct") for p in polls],
            "bystander_p99_ms": [p.bystander_p99 for p in polls],
        }
    return {
        "loaded": loaded,
        "started_wall": watch.started_wall,
        "running": watch.running,
        "verdicts": {w.variant: w.polls[-1].verdict for w in watched if w.polls},
        "variants": variants,
    }


def install(web_ui: WebUI, current: Callable[[], Watch | None]) -> None:
    """Add the tab, its data, the chart page and the CSVs to Locust's web UI; `current` gives
    the watch of the running (or last) test, None before the first."""
    app = web_ui.app
    if app is None:
        return
    web_ui.template_args.update(tab_template_args())
    # Jinja's tojson sorts keys by default, and the UI lists the picker's classes and the
    # custom parameters in the order of templateArgs: keep first_screen's order instead.
    app.jinja_env.policies["json.dumps_kwargs"] = {"sort_keys": False}

    def index() -> str:
        from flask import render_template

        web_ui.update_template_args()
        return render_template("index.html", template_args=first_screen(web_ui.template_args))

    # Locust's own index view, with the same template and the same arguments, adjusted.
    if "locust.index" in app.view_functions:
        app.view_functions["locust.index"] = web_ui.auth_required_if_enabled(index)

    @app.after_request
    def add_server_rows(response: Response) -> Response:
        if request.path != "/stats/requests" or response.status_code != 200:
            return response
        payload = response.get_json(silent=True)
        if isinstance(payload, dict):
            extended = [{"key": TAB_KEY, "data": tab_rows(current())}]
            response.set_data(json.dumps({**payload, "extended_stats": extended}))
        return response

    def csv_response(text: str, name: str) -> Response:
        disposition = f"attachment; filename={name}"
        return Response(text, mimetype="text/csv", headers={"Content-Disposition": disposition})

    def server_csv() -> Response:
        watch = current()
        return csv_response(watch.server_csv() if watch else "", "server.csv")

    def bystander_csv() -> Response:
        watch = current()
        return csv_response(watch.bystander_csv() if watch else "", "bystander.csv")

    def data() -> Response:
        return Response(json.dumps(chart_data(current())), mimetype="application/json")

    def page() -> Response:
        return send_from_directory(STATIC, "server.html", max_age=0)

    def static(path: str) -> Response:
        return send_from_directory(STATIC, path)

    for rule, view in (
        (CHART_PATH, page),
        (DATA_PATH, data),
        (SERVER_CSV_PATH, server_csv),
        (BYSTANDER_CSV_PATH, bystander_csv),
        ("/server/static/<path:path>", static),
    ):
        app.add_url_rule(rule, f"lab_{view.__name__}", web_ui.auth_required_if_enabled(view))
