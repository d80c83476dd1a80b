"""The lab's claims, measured on real servers with small numbers.

Timings are asserted as generous bounds and ratios: these machines are noisy and have 2 cores.
"""

from __future__ import annotations

import math
import threading
import time

import httpx
import pytest

from tests.helpers import AppClient, burst

N = 20
DELAY_MS = 100


def test_async_serves_n_upstream_calls_in_about_one_delay(start_api) -> None:
    url = start_api("async")
    burst(f"{url}/io/upstream?delay_ms=1", N)  # warm the upstream connection pool
    elapsed, responses = burst(f"{url}/io/upstream?delay_ms={DELAY_MS}", N)
    assert all(r.status_code == 200 for r in responses)
    assert elapsed < 3 * DELAY_MS / 1000, elapsed  # ~0.1 s, not N x 0.1 s


@pytest.mark.parametrize("variant", ["sync", "threaded"])
def test_sync_drivers_are_capped_by_threadpool_tokens(start_api, variant: str) -> None:
    """`def` endpoints and `async def` + run_in_threadpool hold a token for each blocking call."""
    tokens = 5
    url = start_api(variant, THREADPOOL_TOKENS=tokens)
    burst(f"{url}/io/upstream?delay_ms=1", tokens)
    elapsed, responses = burst(f"{url}/io/upstream?delay_ms={DELAY_MS}", N)
    assert all(r.status_code == 200 for r in responses)
    expected = math.ceil(N / tokens) * DELAY_MS / 1000  # 4 waves of 5: 0.4 s
    assert 0.85 * expected < elapsed < 2 * expected, (elapsed, expected)


def test_blocking_serves_one_request_at_a_time(start_api) -> None:
    url = start_api("blocking")
    elapsed, responses = burst(f"{url}/io/upstream?delay_ms={DELAY_MS}", N)
    assert all(r.status_code == 200 for r in responses)
    expected = N * DELAY_MS / 1000  # 2 s: every call blocks the only loop
    assert 0.9 * expected < elapsed < 2 * expected, (elapsed, expected)


def _lag_under_load(url: str) -> tuple[float, dict]:
    """Fire a burst, then read /runtime: the worst loop lag over the last 10 s."""
    burst(f"{url}/io/upstream?delay_ms={DELAY_MS}", N)
    runtime = httpx.get(f"{url}/runtime", timeout=30).json()
    return runtime["loop_lag_max_ms"], runtime


def test_runtime_shows_loop_lag_on_blocking_not_on_async_or_threaded(start_api) -> None:
    blocking_lag, _ = _lag_under_load(start_api("blocking"))
    async_lag, _ = _lag_under_load(start_api("async"))
    threaded_lag, _ = _lag_under_load(start_api("threaded"))  # same drivers, off the loop
    assert blocking_lag >= 0.8 * DELAY_MS, blocking_lag  # the loop froze for whole calls
    assert async_lag < DELAY_MS / 2, async_lag
    assert threaded_lag < DELAY_MS / 2, threaded_lag
    assert blocking_lag > 3 * max(async_lag, threaded_lag)


def test_runtime_and_metrics_show_threadpool_in_use_during_sync_load(start_api) -> None:
    url = start_api("sync", THREADPOOL_TOKENS=4)
    seen: dict[str, object] = {}

    def sample() -> None:
        seen["runtime"] = httpx.get(f"{url}/runtime", timeout=10).json()
        seen["metrics"] = httpx.get(f"{url}/metrics", timeout=10).text

    timer = threading.Timer(0.5, sample)
    timer.start()
    burst(f"{url}/io/upstream?delay_ms=300", 12)  # 3 waves of 4: ~0.9 s
    timer.join()
    assert seen["runtime"]["threadpool"] == {"borrowed": 4, "total": 4}  # type: ignore[index]
    assert seen["runtime"]["in_flight"] >= 9  # type: ignore[index]
    assert "lab_threadpool_tokens_borrowed 4.0" in seen["metrics"]  # type: ignore[operator]
    idle = httpx.get(f"{url}/runtime").json()
    assert idle["threadpool"]["borrowed"] == 0 and idle["in_flight"] == 1  # itself


def test_cpu_threads_help_only_native_work_processes_help_both(start_api) -> None:
    """4 jobs of ~100 ms CPU on: 1 thread (the serial reference), 2 threads, 2 processes."""
    pools = {
        "1 thread": start_api("offload", CPU_EXECUTOR="thread", CPU_WORKERS=1),
        "2 threads": start_api("offload", CPU_EXECUTOR="thread", CPU_WORKERS=2),
        "2 processes": start_api("offload", CPU_EXECUTOR="process", CPU_WORKERS=2),
    }
    for url in pools.values():
        burst(f"{url}/cpu?work=5&kind=python", 2)  # start the pools' threads and processes
    wall: dict[tuple[str, str], float] = {}
    for kind in ("python", "native"):
        # Round-robin, best of 3: this VM's cores are noisy, and a disturbance then hits every
        # pool alike; the best run of each is its least disturbed one.
        for _ in range(3):
            for name, url in pools.items():
                elapsed, responses = burst(f"{url}/cpu?work=100&kind={kind}", 4)
                assert all(r.status_code == 200 for r in responses)
                wall[kind, name] = min(elapsed, wall.get((kind, name), elapsed))
    ratio = {k: round(wall[k] / wall[k[0], "1 thread"], 2) for k in wall}
    # The GIL: two threads take turns on pure-Python work, no faster than one. Typically
    # 0.97-1.06 here; CI once read 0.88 on a busy host, so the bound leaves room for that.
    assert ratio["python", "2 threads"] > 0.8, ratio
    # Processes run it in parallel; pbkdf2 releases the GIL, so threads do too.
    assert ratio["python", "2 processes"] < 0.85, ratio
    assert ratio["native", "2 threads"] < 0.85, ratio
    assert ratio["native", "2 processes"] < 0.85, ratio


def test_cpu_in_async_def_blocks_other_requests(start_api) -> None:
    """CPU inline in `async def` freezes the loop: a 1 ms request waits behind it."""
    lags = {}
    work_s = {}
    for variant in ("async", "offload"):
        url = start_api(variant, CPU_EXECUTOR="process")
        timer = threading.Timer(0.05, lambda u=url, v=variant: lags.__setitem__(
            v, httpx.get(f"{u}/healthz").elapsed.total_seconds()))  # fmt: skip
        timer.start()
        done = httpx.get(f"{url}/cpu?work=400&kind=python", timeout=30).json()
        work_s[variant] = done["elapsed_ms"] / 1000  # how long the work really took here
        timer.join()
    # sent 50 ms into the work, the 1 ms request waited for most of the rest of it
    assert lags["async"] > 0.5 * work_s["async"], (lags, work_s)
    assert lags["offload"] < 0.1, lags


def test_gunicorn_workers_merge_metrics(start_api) -> None:
    url = start_api("async", API_SERVER="gunicorn", API_WORKERS=2)

    def tokens_total() -> float:
        text = httpx.get(f"{url}/metrics").text
        return sum(_samples(text, "lab_threadpool_tokens_total"))

    deadline = time.monotonic() + 20  # /healthz answers as soon as the first worker is up
    while tokens_total() != 80 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert tokens_total() == 80  # 40 per worker, summed over both
    _, responses = burst(f"{url}/items/3", 30)
    assert all(r.status_code == 200 for r in responses)

    def items_count() -> float:
        text = httpx.get(f"{url}/metrics").text
        return sum(_samples(text, "lab_http_request_duration_seconds_count", "/items/{item_id}"))

    # Every worker's requests, whichever worker answered /metrics: the answering worker adds its
    # latest at once, the other within its next gauge refresh (GAUGES_EVERY_S).
    deadline = time.monotonic() + 5
    while items_count() != 30 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert items_count() == 30
    assert httpx.get(f"{url}/runtime").json()["server"] == "gunicorn"


def _samples(text: str, name: str, label: str = "") -> list[float]:
    return [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and label in line
    ]


def test_runtime_shows_where_the_cpu_goes(start_api) -> None:
    """CPU work inline shows as the API process's CPU; offloaded, as its workers' (children)."""
    seen: dict[str, dict] = {}
    for variant in ("async", "offload"):
        url = start_api(variant, CPU_EXECUTOR="process", CPU_WORKERS=2)
        polls: list[dict] = []
        done = threading.Event()

        def poll(u: str = url, into: list[dict] = polls, done: threading.Event = done) -> None:
            # Every 0.2 s during the burst (on async a poll waits for the loop): the busiest
            # sample, since CPU % is over the last ~second and the work may end early.
            while not done.is_set():
                into.append(httpx.get(f"{u}/runtime", timeout=30).json()["process"])
                time.sleep(0.2)

        poller = threading.Thread(target=poll)
        poller.start()
        burst(f"{url}/cpu?work=400&kind=python", 4)  # ~1.6 s of CPU (async), ~0.8 s (offload)
        time.sleep(0.3)
        done.set()
        poller.join()
        busiest = max(polls, key=lambda p: p["cpu_pct"] + p["children_cpu_pct"])
        seen[variant] = {**busiest, "children": max(p["children"] for p in polls)}
    api, offload = seen["async"], seen["offload"]
    # Ratios, not levels: with other work on the 2 cores every process gets less of a core.
    assert api["cpu_pct"] > 3 * offload["cpu_pct"], (api, offload)  # the loop itself was busy
    # offload: two workers (and multiprocessing's resource tracker) did the work
    assert offload["children"] >= 2, offload
    assert offload["children_cpu_pct"] > 3 * offload["cpu_pct"], offload
    assert api["rss_mb"] > 10 and api["threads"] >= 1, api
    metrics = httpx.get(f"{url}/metrics").text
    assert _samples(metrics, "lab_process_resident_bytes", 'process="api"')[0] > 10 * 2**20


def test_latency_histogram_buckets_match_the_requests(app_client: AppClient) -> None:
    """The middleware counts latencies into buckets and adds them to the histogram per interval
    and on /metrics: /metrics must show every request in the right buckets. (The histogram is
    process-wide and other in-process tests use it too: differences, not totals.)"""
    client = app_client("async")
    route = 'route="/io/upstream"'

    def series() -> dict[str, float]:
        found = {}
        for line in client.get("/metrics").text.splitlines():
            if line.startswith("lab_http_request_duration_seconds") and route in line:
                name, value = line.rsplit(" ", 1)
                kind = name.split("{")[0].rsplit("_", 1)[1]
                le = name.split('le="')[1].split('"')[0] if 'le="' in name else ""
                found[f"{kind}{le}"] = found.get(f"{kind}{le}", 0.0) + float(value)
        return found

    before = series()
    for delay_ms in (0, 0, 0, 120, 120):
        assert client.get(f"/io/upstream?delay_ms={delay_ms}").status_code == 200
    after = series()

    def added(key: str) -> float:
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert added("count") == 5
    assert (added("bucket0.1"), added("bucket0.2"), added("bucket+Inf")) == (3, 5, 5)
    assert 0.24 < added("sum") < 2, added("sum")
