"""The lab's claims, measured on real servers with small numbers.

Timings are asserted as generous bounds and ratios: these machines are noisy and have 2 cores.
"""

from __future__ import annotations

import math
import threading

import httpx
import pytest

from tests.helpers import burst, get

N = 20
DELAY_MS = 100


def test_async_serves_n_upstream_calls_in_about_one_delay(start_api) -> None:
    url = start_api("async")
    burst(f"{url}/io/upstream?delay_ms=1", N)  # warm the upstream connection pool
    elapsed, responses = burst(f"{url}/io/upstream?delay_ms={DELAY_MS}", N)
    assert all(r.status_code == 200 for r in responses)
    assert elapsed < 3 * DELAY_MS / 1000, elapsed  # ~0.1 s, not N x 0.1 s


def test_sync_is_capped_by_threadpool_tokens(start_api) -> None:
    tokens = 5
    url = start_api("sync", THREADPOOL_TOKENS=tokens)
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


def test_runtime_shows_loop_lag_on_blocking_not_on_async(start_api) -> None:
    blocking_lag, _ = _lag_under_load(start_api("blocking"))
    async_lag, _ = _lag_under_load(start_api("async"))
    assert blocking_lag >= 0.8 * DELAY_MS, blocking_lag  # the loop froze for whole calls
    assert async_lag < DELAY_MS / 2, async_lag
    assert blocking_lag > 3 * async_lag


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


@pytest.mark.parametrize("kind", ["python", "native"])
def test_cpu_threads_help_only_native_work_processes_help_both(start_api, kind: str) -> None:
    work, n = 60, 4  # 4 jobs of ~60 ms CPU, 2 executor workers: ideal parallel time = half
    walls, serial = {}, {}
    for executor in ("thread", "process"):
        url = start_api("offload", CPU_EXECUTOR=executor, CPU_WORKERS=2)
        # One job at a time, as measured where it ran: what n jobs cost with no parallelism.
        one = [get(f"{url}/cpu?work={work}&kind={kind}").json()["elapsed_ms"] for _ in range(3)]
        serial[executor] = n * sorted(one)[1] / 1000
        walls[executor], responses = burst(f"{url}/cpu?work={work}&kind={kind}", n)
        assert all(r.status_code == 200 for r in responses)
    speedup = {e: serial[e] / walls[e] for e in walls}
    assert speedup["process"] > 1.3, speedup  # processes: parallel for both kinds
    if kind == "python":
        assert speedup["thread"] < 1.15, speedup  # the GIL: threads take turns
    else:
        assert speedup["thread"] > 1.3, speedup  # pbkdf2 releases the GIL


def test_cpu_in_async_def_blocks_other_requests(start_api) -> None:
    """CPU inline in `async def` freezes the loop: a 1 ms request waits behind it."""
    lags = {}
    for variant in ("async", "offload"):
        url = start_api(variant, CPU_EXECUTOR="thread")
        timer = threading.Timer(0.05, lambda u=url, v=variant: lags.__setitem__(
            v, httpx.get(f"{u}/healthz").elapsed.total_seconds()))  # fmt: skip
        timer.start()
        httpx.get(f"{url}/cpu?work=400&kind=python", timeout=30)
        timer.join()
    assert lags["async"] > 0.2, lags  # waited for most of the ~400 ms of CPU
    assert lags["offload"] < 0.1, lags


def test_gunicorn_workers_merge_metrics(start_api) -> None:
    url = start_api("async", API_SERVER="gunicorn", API_WORKERS=2)
    _, responses = burst(f"{url}/items/3", 30)
    assert all(r.status_code == 200 for r in responses)
    text = httpx.get(f"{url}/metrics").text
    count = sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("lab_http_request_duration_seconds_count")
        and 'route="/items/{item_id}"' in line
    )
    assert count == 30, text  # all workers' requests, whichever worker answered /metrics
    assert "lab_threadpool_tokens_total 80.0" in text  # 40 per worker, summed
    assert httpx.get(f"{url}/runtime").json()["server"] == "gunicorn"
