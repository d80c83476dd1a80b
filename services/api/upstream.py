"""Clients for the slow mock upstream: one pooled httpx client per process, sync or async."""

from __future__ import annotations

import time

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


_FAILURES = (httpx.HTTPError, aiohttp.ClientError)


def _translate(exc: Exception, timeout: float) -> Exception:
    """httpx exceptions -> the lab's 502/503/504 (for both the sync and the async call; an
    `except` clause, not a context manager: nothing to pay on the way when the call succeeds)."""
    if isinstance(exc, httpx.PoolTimeout):
        return PoolExhausted(f"no upstream connection free after {timeout:g} s")
    if isinstance(exc, httpx.TimeoutException):
        # httpx-aiohttp reports every aiohttp connection error (refused, reset) as ConnectTimeout.
        cause = exc.__cause__
        if isinstance(cause, aiohttp.ClientError) and not isinstance(cause, TimeoutError):
            return UpstreamError(f"upstream unreachable: {type(cause).__name__}")
        return UpstreamTimeout(f"upstream did not answer within {timeout:g} s")
    if isinstance(exc, httpx.HTTPError):
        return UpstreamError(f"upstream unreachable: {type(exc).__name__}")
    # what httpx-aiohttp leaves untranslated (bad HTTP, ...)
    if isinstance(exc, TimeoutError):
        return UpstreamTimeout(f"upstream did not answer within {timeout:g} s")
    return UpstreamError(f"upstream failed: {type(exc).__name__}")


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
        try:
            response = self.client.get(f"/todos/{TODO_ID}", params={"delay_ms": delay_ms})
        except _FAILURES as exc:
            raise _translate(exc, self.timeout) from exc
        return _result(response, delay_ms, start)

    def ping(self) -> None:
        try:
            response = self.client.get("/healthz")
        except _FAILURES as exc:
            raise _translate(exc, self.timeout) from exc
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
        try:
            response = await self.client.get(f"/todos/{TODO_ID}", params={"delay_ms": delay_ms})
        except _FAILURES as exc:
            raise _translate(exc, self.timeout) from exc
        return _result(response, delay_ms, start)

    async def ping(self) -> None:
        try:
            response = await self.client.get("/healthz")
        except _FAILURES as exc:
            raise _translate(exc, self.timeout) from exc
        _check_health(response)
