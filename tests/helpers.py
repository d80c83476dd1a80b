"""Small client-side helpers for tests that fire concurrent requests at a real server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx
from fastapi.testclient import TestClient

# The `app_client` fixture: variant name and setting overrides -> an in-process client.
AppClient = Callable[..., TestClient]


async def _burst(url: str, n: int, seconds: float) -> tuple[float, list[httpx.Response]]:
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(timeout=seconds, limits=limits) as client:
        start = time.perf_counter()
        responses = await asyncio.gather(*(client.get(url) for _ in range(n)))
        return time.perf_counter() - start, list(responses)


def burst(url: str, n: int, timeout: float = 60.0) -> tuple[float, list[httpx.Response]]:
    """n concurrent GETs (n connections, all opened together); wall time for all of them."""
    return asyncio.run(_burst(url, n, timeout))


def get(url: str, timeout: float = 30.0) -> httpx.Response:
    return httpx.get(url, timeout=timeout)
