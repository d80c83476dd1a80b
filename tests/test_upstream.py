"""Tests of the mock upstream, against real `python -m services.upstream` processes."""

import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.lab.netcheck import free_port
from services.lab.procs import ServerProcess, Supervisor

ROOT = Path(__file__).resolve().parents[1]


def server_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOCK_")}
    return env | {"MOCK_HOST": "127.0.0.1"} | {f"MOCK_{k.upper()}": v for k, v in settings.items()}


@contextlib.contextmanager
def start_server(**settings: str) -> Iterator[str]:
    """Run the upstream on a free port until the block ends; yield its base URL. The shell's
    MOCK_* variables are not passed on: each test sees only the settings it gives."""
    port = free_port()
    env = {"MOCK_HOST": "127.0.0.1", "MOCK_PORT": str(port)}
    env |= {f"MOCK_{k.upper()}": v for k, v in settings.items()}
    with tempfile.TemporaryDirectory(prefix="upstream-test-") as logs:
        server = ServerProcess(
            name="upstream",
            cmd=[sys.executable, "-m", "services.upstream"],
            env=env,
            health_url=f"http://127.0.0.1:{port}/healthz",
            log_path=Path(logs) / "upstream.log",
            cwd=ROOT,
            unset_prefixes=("MOCK_",),
        )
        with Supervisor() as supervisor:
            supervisor.start(server, health_timeout=30)  # 2 shared cores: boots can be slow
            yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    with start_server(latency_ms="150") as url:
        yield url


@pytest.fixture(scope="module")
def client(upstream: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=upstream, timeout=5) as c:
        yield c


def timed_get(client: httpx.Client, url: str) -> tuple[httpx.Response, float]:
    start = time.perf_counter()
    response = client.get(url)
    return response, (time.perf_counter() - start) * 1000


def test_health_and_config(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    config = client.get("/config").json()
    assert config["latency_ms"] == 150
    assert config["error_rate"] == 0
    assert config["jitter"] == "fixed"


def test_delay_is_honoured(client: httpx.Client) -> None:
    response, elapsed_ms = timed_get(client, "/todos/1?delay_ms=200")
    assert response.status_code == 200
    assert 200 <= elapsed_ms < 400
    assert float(response.headers["x-mock-delay-ms"]) == 200


def test_default_latency_comes_from_settings(client: httpx.Client) -> None:
    response, elapsed_ms = timed_get(client, "/todos/2")
    assert response.status_code == 200
    assert 150 <= elapsed_ms < 350
    assert float(response.headers["x-mock-delay-ms"]) == 150


def test_todo_body_shape_is_deterministic(client: httpx.Client) -> None:
    body = client.get("/todos/1?delay_ms=0").json()
    assert set(body) == {"userId", "id", "title", "completed"}
    assert body["id"] == 1 and body["userId"] == 1
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["completed"], bool)
    assert client.get("/todos/1?delay_ms=0").json() == body
    assert client.get("/todos/200?delay_ms=0").json()["userId"] == 10
    post = client.get("/posts/3?delay_ms=0").json()
    assert set(post) == {"userId", "id", "title", "body"} and post["id"] == 3


@pytest.mark.parametrize(
    "path",
    # %C2%B2 is "²", %D9%A1 an Arabic-Indic 1: str.isdigit() says yes to both; int("²") raises.
    ["/todos/201", "/todos/0", "/todos/abc", "/posts/101", "/nope", "/todos/%C2%B2",
     "/todos/%D9%A1", "/posts/%C2%B9"],
)  # fmt: skip
def test_unknown_is_404_json(client: httpx.Client, path: str) -> None:
    response = client.get(f"{path}?delay_ms=0")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert "detail" in response.json()


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("delay_ms=abc", "delay_ms"),
        ("delay_ms=-1", "delay_ms"),
        ("delay_ms=600001", "delay_ms"),
        ("delay_ms=1.5", "delay_ms"),
        ("error=maybe", "error"),
        ("hang=2", "hang"),
        ("status=200", "status"),
    ],
)
def test_bad_query_param_is_422_naming_it(client: httpx.Client, query: str, param: str) -> None:
    response, elapsed_ms = timed_get(client, f"/todos/1?{query}")
    assert response.status_code == 422
    assert param in response.json()["detail"]
    assert elapsed_ms < 100  # rejected at once, not after the default latency


def test_forced_error_and_status(client: httpx.Client) -> None:
    response = client.get("/todos/1?error=1&delay_ms=0")
    assert response.status_code == 503
    assert response.json()["status"] == 503
    response, elapsed_ms = timed_get(client, "/todos/1?status=500&delay_ms=50")
    assert response.status_code == 500
    assert response.json() == {"detail": "Internal Server Error", "status": 500}
    assert elapsed_ms >= 50  # a forced error still takes the delay


def test_forced_hang_times_out_and_is_released(upstream: str, client: httpx.Client) -> None:
    start = time.perf_counter()
    with pytest.raises(httpx.ReadTimeout), httpx.Client(timeout=0.5) as impatient:
        impatient.get(f"{upstream}/todos/1?hang=1")
    assert time.perf_counter() - start < 2
    # The client went away: the server stops waiting instead of holding the request for an hour.
    deadline = time.monotonic() + 3
    while client.get("/stats").json()["in_flight"] != 0:
        assert time.monotonic() < deadline, "hanging request still held after its client left"
        time.sleep(0.05)


def test_concurrent_requests_overlap(upstream: str) -> None:
    async def run() -> list[int]:
        async with httpx.AsyncClient(base_url=upstream, timeout=5) as ac:
            responses = await asyncio.gather(
                *(ac.get(f"/todos/{i}?delay_ms=300") for i in range(1, 21))
            )
        return [r.status_code for r in responses]

    start = time.perf_counter()
    statuses = asyncio.run(run())
    assert statuses == [200] * 20
    assert time.perf_counter() - start < 0.6


@pytest.mark.parametrize(("kind", "high_ms"), [("uniform", 50.0), ("longtail", 20 + 20 * 10.0)])
def test_jitter_stays_within_bounds(kind: str, high_ms: float) -> None:
    jitter_ms = "30" if kind == "uniform" else "10"
    with start_server(latency_ms="20", jitter=kind, jitter_ms=jitter_ms) as url:

        async def run() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=url, timeout=5) as ac:
                return await asyncio.gather(*(ac.get("/todos/1") for _ in range(20)))

        delays = [float(r.headers["x-mock-delay-ms"]) for r in asyncio.run(run())]
        assert all(20 <= d <= high_ms for d in delays), delays
        assert len(set(delays)) > 1, "no jitter applied"


def test_error_rate_one_gives_503_json() -> None:
    with start_server(error_rate="1.0", latency_ms="0") as url:
        with httpx.Client(base_url=url, timeout=5) as c:
            for _ in range(5):
                response = c.get("/todos/1")
                assert response.status_code == 503
                assert response.headers["content-type"] == "application/json"
                assert response.json()["detail"]
            assert c.get("/todos/1?error=0").status_code == 200  # per-request override


@pytest.mark.parametrize(
    ("name", "value"), [("MOCK_ERROR_RATE", "2"), ("MOCK_JITTER", "gaussian"), ("MOCK_PORT", "x")]
)
def test_bad_setting_stops_start_up(name: str, value: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "services.upstream"],
        cwd=ROOT,
        env=server_env(port=str(free_port())) | {name: value},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert f"invalid setting {name}:" in result.stderr
    assert "Traceback" not in result.stderr


def test_bench_cpu_counters() -> None:
    from services.upstream.bench import machine_busy_s, pct, proc_cpu_s

    sum(i * i for i in range(200_000))  # burn a little CPU so the counters move
    assert proc_cpu_s(os.getpid()) > 0
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    assert proc_cpu_s(int(gone.stdout)) != proc_cpu_s(int(gone.stdout))  # NaN: exited
    assert machine_busy_s() > 0
    assert pct([1.0, 2.0, 3.0, 4.0], 50) == 2.0 and pct([1.0, 2.0, 3.0, 4.0], 100) == 4.0


def test_bench_quick_run_passes() -> None:
    # A short, lenient run (2 cores shared with other work): it proves the benchmark starts
    # the server, drives it, judges the run and stops the server, not the upstream's numbers.
    result = subprocess.run(
        [sys.executable, "-m", "services.upstream.bench", "--rate", "100", "--delay-ms", "100",
         "--duration", "1", "--sanity-duration", "0", "--min-inflight", "5",
         "--max-p99-ms", "1000", "--min-rate-ratio", "0.5", "--no-pin"],
        cwd=ROOT, env=server_env(error_rate="1.0"), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "RESULT: PASS" in result.stdout
    assert "errors 0" in result.stdout  # the shell's MOCK_ERROR_RATE=1 did not reach it
