"""Clients for the slow mock upstream: one pooled httpx client per process, sync or async."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport
from pydantic import ValidationError

from .errors import PoolExhausted, UpstreamError, UpstreamTimeout
from .schemas import Todo, UpstreamCall
from .settings import Settings

TODO_ID = 1


def _limits(s: Settings) -> httpx.Limits:
    n = s.upstream_max_connections
    return httpx.Limits(max_connections=n, max_keepalive_connections=n)


# One number bounds connect, each read, each write and the wait for a pooled connection: a hung
# upstream becomes a 504 after UPSTREAM_TIMEOUT, never a hung request.
def _timeout(s: Settings) -> httpx.Timeout:
    return httpx.Timeout(s.upstream_timeout)


@contextmanager
def _translate_errors(timeout: float) -> Iterator[None]:
    """httpx exceptions -> the lab's 502/503/504 (wraps both the sync and the async call)."""
    try:
        yield
    except httpx.PoolTimeout as exc:
        raise PoolExhausted(f"no upstream connection free after {timeout:g} s") from exc
    except httpx.TimeoutException as exc:
        # httpx-aiohttp reports every aiohttp connection error (refused, reset) as ConnectTimeout.
        cause = exc.__cause__
        if isinstance(cause, aiohttp.ClientError) and not isinstance(cause, TimeoutError):
            raise UpstreamError(f"upstream unreachable: {type(cause).__name__}") from exc
        raise UpstreamTimeout(f"upstream did not answer within {timeout:g} s") from exc
    except httpx.HTTPError as exc:
        raise UpstreamError(f"upstream unreachable: {type(exc).__name__}") from exc
    except aiohttp.ClientError as exc:  # what httpx-aiohttp leaves untranslated (bad HTTP, ...)
        if isinstance(exc, TimeoutError):
            raise UpstreamTimeout(f"upstream did not answer within {timeout:g} s") from exc
        raise UpstreamError(f"upstream failed: {type(exc).__name__}") from exc


def _result(response: httpx.Response, delay_ms: int, start: float) -> UpstreamCall:
    if response.status_code != 200:
        raise UpstreamError(f"upstream answered {response.status_code}")
    elapsed_ms = (time.perf_counter() - start) * 1000
    try:
        todo = Todo.model_validate_json(response.content)
    except ValidationError as exc:
        raise UpstreamError("upstream answered 200 with an unexpected body") from exc
    return UpstreamCall(delay_ms=delay_ms, elapsed_ms=elapsed_ms, todo=todo)


def _check_health(response: httpx.Response) -> None:
    if response.status_code != 200:
        raise UpstreamError(f"upstream answered {response.status_code}")


class SyncUpstream:
    def __init__(self, s: Settings) -> None:
        self.timeout, self.default_delay_ms = s.upstream_timeout, s.default_delay_ms
        self.client = httpx.Client(base_url=s.upstream_url, timeout=_timeout(s), limits=_limits(s))

    def __enter__(self) -> SyncUpstream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()

    def todo(self, delay_ms: int | None = None) -> UpstreamCall:
        """GET one todo that the upstream answers after delay_ms (default: DEFAULT_DELAY_MS)."""
        delay_ms = self.default_delay_ms if delay_ms is None else delay_ms
        start = time.perf_counter()
        with _translate_errors(self.timeout):
            response = self.client.get(f"/todos/{TODO_ID}", params={"delay_ms": delay_ms})
        return _result(response, delay_ms, start)

    def ping(self) -> None:
        with _translate_errors(self.timeout):
            response = self.client.get("/healthz")
        _check_health(response)


class AsyncUpstream:
    def __init__(self, s: Settings) -> None:
        self.timeout, self.default_delay_ms = s.upstream_timeout, s.default_delay_ms
        # httpx's own transport (httpcore 1.0.9) spends its time re-scanning its pool once about
        # 200 calls are in flight (~50 req/s at 100% CPU on the 2-core reference machine; rerun:
        # UPSTREAM_TRANSPORT=httpcore, then `make compare VARIANTS=async`); aiohttp's pool under
        # the same httpx.AsyncClient API does not.
        transport = (
            AiohttpTransport(limits=_limits(s)) if s.upstream_transport == "aiohttp" else None
        )
        self.client = httpx.AsyncClient(
            base_url=s.upstream_url, timeout=_timeout(s), limits=_limits(s), transport=transport
        )

    async def __aenter__(self) -> AsyncUpstream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()

    async def todo(self, delay_ms: int | None = None) -> UpstreamCall:
        """GET one todo that the upstream answers after delay_ms (default: DEFAULT_DELAY_MS)."""
        delay_ms = self.default_delay_ms if delay_ms is None else delay_ms
        start = time.perf_counter()
        with _translate_errors(self.timeout):
            response = await self.client.get(f"/todos/{TODO_ID}", params={"delay_ms": delay_ms})
        return _result(response, delay_ms, start)

    async def ping(self) -> None:
        with _translate_errors(self.timeout):
            response = await self.client.get("/healthz")
        _check_health(response)
