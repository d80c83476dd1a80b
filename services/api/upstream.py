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


def _client_options(s: Settings) -> dict[str, object]:
    return {
        "base_url": s.upstream_url,
        # One number bounds connect, each read, each write and the wait for a pooled connection:
        # a hung upstream becomes a 504 after UPSTREAM_TIMEOUT, never a hung request.
        "timeout": httpx.Timeout(s.upstream_timeout),
        "limits": httpx.Limits(
            max_connections=s.upstream_max_connections,
            max_keepalive_connections=s.upstream_max_connections,
        ),
    }


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
        self.timeout = s.upstream_timeout
        self.client = httpx.Client(**_client_options(s))  # type: ignore[arg-type]

    def __enter__(self) -> SyncUpstream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()

    def todo(self, delay_ms: int) -> UpstreamCall:
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
        self.timeout = s.upstream_timeout
        options = _client_options(s)
        # httpx's own transport (httpcore 1.0.9) spends its time re-scanning its pool once about
        # 200 calls are in flight (~50 req/s at 100% CPU here); aiohttp's pool under the same
        # httpx.AsyncClient API does not. UPSTREAM_TRANSPORT=httpcore shows the difference.
        transport = (
            AiohttpTransport(limits=options["limits"])  # type: ignore[arg-type]
            if s.upstream_transport == "aiohttp"
            else None
        )
        self.client = httpx.AsyncClient(**options, transport=transport)  # type: ignore[arg-type]

    async def __aenter__(self) -> AsyncUpstream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()

    async def todo(self, delay_ms: int) -> UpstreamCall:
        start = time.perf_counter()
        with _translate_errors(self.timeout):
            response = await self.client.get(f"/todos/{TODO_ID}", params={"delay_ms": delay_ms})
        return _result(response, delay_ms, start)

    async def ping(self) -> None:
        with _translate_errors(self.timeout):
            response = await self.client.get("/healthz")
        _check_health(response)
