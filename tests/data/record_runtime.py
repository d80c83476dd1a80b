"""Record real /runtime answers under known loads, for the verdict's unit tests.

    .venv/bin/python -m tests.data.record_runtime    # rewrites tests/data/runtime_samples.json

Starts PostgreSQL (embedded), the mock upstream and one API per case on free ports, loads each
with concurrent httpx requests, and keeps the /runtime answer read in the middle of the load.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from services.lab.postgres import database

OUT = Path(__file__).with_name("runtime_samples.json")
# name -> (variant, extra settings, path, concurrent requests, expected verdict kind)
CASES: dict[str, tuple[str, dict[str, str], str, int, str]] = {
    "sync-upstream-200": ("sync", {}, "/io/upstream?delay_ms=300", 200, "threadpool"),
    "threaded-upstream-200": ("threaded", {}, "/io/upstream?delay_ms=300", 200, "threadpool"),
    "blocking-upstream-20": ("blocking", {}, "/io/upstream?delay_ms=200", 20, "loop"),
    "blocking-upstream-8": ("blocking", {}, "/io/upstream?delay_ms=200", 8, "loop"),
    "async-cpu-10": ("async", {}, "/cpu?work=150&kind=python", 10, "cpu"),
    "offload-cpu-20": ("offload", {}, "/cpu?work=150&kind=python", 20, "executor"),
    "sync-db-pool-2": ("sync", {"DB_POOL_MAX": "2", "DB_POOL_MIN": "1"},
                       "/io/db?delay_ms=400", 20, "db-pool"),
    "async-upstream-20": ("async", {}, "/io/upstream?delay_ms=300", 20, "none"),
}  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(module: str, env: dict[str, str], port_var: str) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", module],
        env={**os.environ, **env, port_var: str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{module} did not start")


POLL_TIMEOUT_S = 2.5  # as the Locust plugin polls: no answer by then is an answer too


async def _load_and_sample(url: str, path: str, n: int) -> dict[str, Any] | None:
    limits = httpx.Limits(max_connections=n + 5)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        load = [asyncio.create_task(client.get(path)) for _ in range(n)]
        await asyncio.sleep(1.0)
        try:
            runtime = (await client.get("/runtime", timeout=POLL_TIMEOUT_S)).json()
        except httpx.TimeoutException:
            runtime = None
        await asyncio.gather(*load)
        return None if runtime is None else dict(runtime)


def main() -> None:
    samples = {}
    with database(Path(tempfile.mkdtemp(prefix="record-runtime-")) / "pgdata") as dsn:
        upstream, upstream_url = _serve("services.upstream", {}, "MOCK_PORT")
        try:
            for name, (variant, extra, path, n, kind) in CASES.items():
                env = {"API_VARIANT": variant, "DATABASE_URL": dsn, "UPSTREAM_URL": upstream_url}
                api, url = _serve("services.api", {**env, **extra}, "API_PORT")
                try:
                    runtime = asyncio.run(_load_and_sample(url, path, n))
                finally:
                    api.terminate()
                    api.wait(30)
                samples[name] = {
                    "expected": kind, "path": path, "users": n, "runtime": runtime,
                    "poll_timeout_s": POLL_TIMEOUT_S,
                }  # fmt: skip
                print(name, "timed out" if runtime is None else runtime["loop_lag_ms"])
        finally:
            upstream.terminate()
            upstream.wait(30)
    OUT.write_text(json.dumps(samples, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
