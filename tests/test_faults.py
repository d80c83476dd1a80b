"""Bad input gets a clear error; a failing dependency gets 502/503/504 with a JSON body, fast."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers import burst

BAD_REQUESTS = [
    ("/io/db?delay_ms=abc", "delay_ms"),
    ("/io/db?delay_ms=-1", "delay_ms"),
    ("/io/upstream?delay_ms=10001", "delay_ms"),
    ("/cpu?work=0", "work"),
    ("/cpu?work=1001", "work"),
    ("/cpu?kind=rust", "kind"),
    ("/items/abc", "item_id"),
    ("/items/0", "item_id"),
]


@pytest.mark.parametrize(("path", "param"), BAD_REQUESTS)
def test_bad_parameters_are_422_naming_the_parameter(
    lab_apis: dict[str, str], path: str, param: str
) -> None:
    for url in lab_apis.values():
        r = httpx.get(url + path)
        assert r.status_code == 422
        assert r.json()["detail"][0]["loc"][-1] == param


@pytest.mark.parametrize(
    "body", [{"item_id": 1}, {"item_id": 1, "quantity": 0}, {"item_id": "x", "quantity": 1}, []]
)
def test_bad_order_bodies_are_422(lab_apis: dict[str, str], body: object) -> None:
    for url in lab_apis.values():
        r = httpx.post(f"{url}/orders", json=body)
        assert r.status_code == 422, r.text


def test_unknown_item_is_404_with_json(lab_apis: dict[str, str]) -> None:
    for url in lab_apis.values():
        r = httpx.get(f"{url}/items/123456789")
        assert r.status_code == 404
        assert r.json() == {"error": "not found", "detail": "item 123456789 does not exist"}


VARIANTS = ["sync", "async", "offload", "blocking"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_database_down_is_503_not_a_hang(start_api, variant: str) -> None:
    # Nothing listens on port 1: every connection attempt is refused at once.
    url = start_api(variant, DATABASE_URL="postgresql://postgres@127.0.0.1:1/postgres")
    for path in ("/items/1", "/io/db?delay_ms=10", "/mixed"):
        start = time.perf_counter()
        r = httpx.get(url + path, timeout=10)
        assert r.status_code == 503, r.text
        assert r.json()["error"] == "database unavailable"
        assert time.perf_counter() - start < 5
    ready = httpx.get(f"{url}/readyz", timeout=10)
    assert ready.status_code == 503
    assert ready.json()["checks"]["upstream"] == "ok"
    assert ready.json()["checks"]["database"] != "ok"


@pytest.mark.parametrize("variant", VARIANTS)
def test_upstream_5xx_is_502(start_api, start_upstream, variant: str) -> None:
    upstream = start_upstream(MOCK_ERROR_RATE=1.0)
    url = start_api(variant, UPSTREAM_URL=upstream)
    r = httpx.get(f"{url}/io/upstream?delay_ms=1")
    assert r.status_code == 502
    assert r.json() == {"error": "upstream error", "detail": "upstream answered 503"}


@pytest.mark.parametrize(
    ("variant", "transport"), [(v, "aiohttp") for v in VARIANTS] + [("async", "httpcore")]
)
def test_upstream_hang_is_504_within_the_timeout(
    start_api, start_upstream, variant: str, transport: str
) -> None:
    upstream = start_upstream(MOCK_HANG_RATE=1.0)
    url = start_api(
        variant, UPSTREAM_URL=upstream, UPSTREAM_TIMEOUT=0.5, UPSTREAM_TRANSPORT=transport
    )
    start = time.perf_counter()
    r = httpx.get(f"{url}/io/upstream?delay_ms=1", timeout=10)
    elapsed = time.perf_counter() - start
    assert r.status_code == 504
    assert r.json()["error"] == "upstream timeout"
    assert 0.5 <= elapsed < 2.0, elapsed


@pytest.mark.parametrize("transport", ["aiohttp", "httpcore"])
def test_upstream_unreachable_is_502(start_api, transport: str) -> None:
    url = start_api("async", UPSTREAM_URL="http://127.0.0.1:1", UPSTREAM_TRANSPORT=transport)
    r = httpx.get(f"{url}/io/upstream")
    assert r.status_code == 502 and r.json()["error"] == "upstream error"
    assert httpx.get(f"{url}/readyz").status_code == 503


@pytest.mark.parametrize("variant", ["sync", "async", "offload"])
def test_pool_exhausted_is_503_after_the_acquire_timeout(start_api, variant: str) -> None:
    # One connection, held 1.5 s by the first query; the others give up after 0.3 s.
    # (Not `blocking`: it serves one request at a time, so its pool is never contended.)
    url = start_api(variant, DB_POOL_MIN=1, DB_POOL_MAX=1, DB_ACQUIRE_TIMEOUT=0.3)
    _, responses = burst(f"{url}/io/db?delay_ms=1500", 3)
    codes = sorted(r.status_code for r in responses)
    assert codes == [200, 503, 503], codes
    refused = [r for r in responses if r.status_code == 503]
    assert all(r.json()["error"] == "pool exhausted" for r in refused)
    assert all(0.25 < r.elapsed.total_seconds() < 1.2 for r in refused)


@pytest.mark.parametrize(
    ("name", "value"),
    [("THREADPOOL_TOKENS", "abc"), ("API_VARIANT", "fast"), ("DB_POOL_MAX", "0"),
     ("CPU_EXECUTOR", "gpu"), ("API_LOOP", "trio")],
)  # fmt: skip
def test_bad_setting_stops_startup_naming_the_variable(name: str, value: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "services.api"],
        env={"PATH": "/usr/bin:/bin", name: value},
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert name in proc.stderr
    assert "Traceback" not in proc.stderr


def test_asyncio_loop_is_selectable(start_api) -> None:
    url = start_api("async", API_LOOP="asyncio")
    assert httpx.get(f"{url}/runtime").json()["loop"] == "asyncio"


@pytest.mark.parametrize("note", ["nul \u0000 inside", "lone \ud800 surrogate"])
def test_unstorable_note_is_422_not_500(lab_apis: dict[str, str], note: str) -> None:
    body = json.dumps({"item_id": 1, "quantity": 1, "note": note})  # JSON escapes both
    for url in lab_apis.values():
        r = httpx.post(f"{url}/orders", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 422, r.text
        assert r.json()["detail"][0]["loc"] == ["body", "note"]


def test_unknown_item_in_order_is_422_naming_item_id(lab_apis: dict[str, str]) -> None:
    for url in lab_apis.values():
        r = httpx.post(f"{url}/orders", json={"item_id": 500_000, "quantity": 1})
        assert r.status_code == 422
        assert r.json()["detail"][0]["loc"] == ["body", "item_id"]


def test_unknown_route_and_method_answer_json(lab_apis: dict[str, str]) -> None:
    url = lab_apis["async"]
    assert httpx.get(f"{url}/nope").json() == {"error": "not found", "detail": "Not Found"}
    r = httpx.delete(f"{url}/items/1")
    assert r.status_code == 405 and r.json()["error"] == "http error"


@pytest.mark.parametrize("variant", VARIANTS)
def test_statement_timeout_is_504(start_api, variant: str) -> None:
    url = start_api(variant, DB_STATEMENT_TIMEOUT=0.5)
    start = time.perf_counter()
    r = httpx.get(f"{url}/io/db?delay_ms=3000", timeout=10)
    assert r.status_code == 504, r.text
    assert r.json()["error"] == "database timeout"
    assert time.perf_counter() - start < 2.5
    assert httpx.get(f"{url}/items/1").status_code == 200  # the connection is still good


@pytest.mark.parametrize("variant", ["sync", "async"])
def test_database_that_never_answers_is_503_not_a_hang(start_api, variant: str) -> None:
    # A socket that accepts connections (kernel backlog) but never speaks PostgreSQL.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        port = silent.getsockname()[1]
        url = start_api(
            variant, DATABASE_URL=f"postgresql://x@127.0.0.1:{port}/x", DB_CONNECT_TIMEOUT=1
        )
        start = time.perf_counter()
        r = httpx.get(f"{url}/items/1", timeout=20)
        assert r.status_code == 503
        assert r.json()["error"] == "database unavailable"  # not "pool exhausted"
        assert time.perf_counter() - start < 5


def test_dead_cpu_worker_is_503_then_recovers(start_api) -> None:
    url = start_api("offload", CPU_EXECUTOR="process", CPU_WORKERS=2)
    pids = {httpx.get(f"{url}/cpu?work=1").json()["pid"] for _ in range(6)}
    os.kill(pids.pop(), signal.SIGKILL)
    codes = [httpx.get(f"{url}/cpu?work=1", timeout=30).status_code for _ in range(4)]
    assert set(codes) <= {200, 503}, codes  # never a 500
    assert codes[-1] == 200, codes  # the pool was replaced


@pytest.mark.parametrize("variant", VARIANTS)
def test_reads_survive_the_server_closing_pooled_connections(
    start_api, database_url: str, variant: str
) -> None:
    """A PostgreSQL restart (or an idle timeout) closes every pooled connection: reads go on."""
    import psycopg2

    url = start_api(variant, DB_POOL_MIN=4)
    burst(f"{url}/io/db?delay_ms=50", 4)  # four connections in the pool
    pid = httpx.get(f"{url}/runtime").json()["pid"]
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = %s",
            (f"lab-{variant}-{pid}",),
        )
        assert cur.fetchone()[0] >= 1  # this server's sessions, nobody else's
    conn.close()
    codes = [httpx.get(f"{url}/items/{i}").status_code for i in range(1, 7)]
    assert codes == [200] * 6, codes
