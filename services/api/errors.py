"""Failures of a dependency, turned into a status code and a JSON body (never a traceback)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from concurrent.futures import BrokenExecutor
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("lab.api")


class LabError(Exception):
    """An expected failure: its class says which status code and error name it becomes."""

    status_code = 500
    error = "internal error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(LabError):
    status_code = 404
    error = "not found"


class DatabaseUnavailable(LabError):
    status_code = 503
    error = "database unavailable"


class DatabaseTimeout(LabError):
    """The statement outlived DB_STATEMENT_TIMEOUT (cancelled by the server, or by the client)."""

    status_code = 504
    error = "database timeout"


class ExecutorUnavailable(LabError):
    """A CPU worker process died; the pool is being replaced."""

    status_code = 503
    error = "cpu executor unavailable"


class PoolExhausted(LabError):
    """No connection became free within the acquire timeout."""

    status_code = 503
    error = "pool exhausted"


class UpstreamError(LabError):
    """The upstream answered 5xx, or could not be reached."""

    status_code = 502
    error = "upstream error"


class UpstreamTimeout(LabError):
    status_code = 504
    error = "upstream timeout"


# SQLSTATE classes meaning "the database cannot serve now", not "this query is wrong":
# 08 connection exception, 28 invalid authorization, 53 insufficient resources (too many
# connections), 57 operator intervention (shutting down, starting up).
_UNAVAILABLE_CLASSES = ("08", "28", "53", "57")
QUERY_CANCELED = "57014"  # statement_timeout fired


def from_sqlstate(code: str | None, message: str) -> LabError | None:
    """One mapping for both drivers (asyncpg's .sqlstate, psycopg2's .pgcode)."""
    if code == QUERY_CANCELED:
        return DatabaseTimeout(message)
    if code and code[:2] in _UNAVAILABLE_CLASSES:
        return DatabaseUnavailable(message)
    return None


def _problem(status: int, error: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status)


async def _lab_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, LabError)
    return _problem(exc.status_code, exc.error, exc.detail)


# What FastAPI raises (a 400 no operation documents) when a body cannot even be decoded: bytes
# that are not UTF-8, JSON nested deeper than the parser's recursion limit.
_UNPARSABLE_BODY = "There was an error parsing the body"


async def _http_error(request: Request, exc: Exception) -> Response:
    # Unknown route (404) or method (405): the same body shape as every other error.
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and exc.detail == _UNPARSABLE_BODY:
        # The documented answer to a body that is not JSON: the 422 FastAPI gives malformed JSON.
        return _validation_response(
            [{"type": "json_invalid", "loc": ["body"], "msg": "JSON decode error", "input": {},
              "ctx": {"error": "the body is not UTF-8 JSON a parser can read"}}]
        )  # fmt: skip
    error = "not found" if exc.status_code == 404 else "http error"
    # Starlette puts `Allow` on its 405 (RFC 9110 requires it): keep whatever headers it set.
    response = _problem(exc.status_code, error, str(exc.detail))
    response.headers.update(exc.headers or {})
    return response


async def _invalid_request(request: Request, exc: Exception) -> Response:
    # FastAPI's own 422 body, but ASCII-escaped: the errors echo the input, and a lone surrogate
    # in it would make the default (UTF-8) encoder fail with a 500.
    assert isinstance(exc, RequestValidationError)
    return _validation_response(exc.errors())


def _validation_response(errors: Sequence[Any]) -> Response:
    body = json.dumps({"detail": jsonable_encoder(errors)}, ensure_ascii=True)
    return Response(body, status_code=422, media_type="application/json")


async def _broken_executor(request: Request, exc: Exception) -> JSONResponse:
    return _problem(503, ExecutorUnavailable.error, "a CPU worker died; retry")


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # Logged with its traceback for the operator; the client gets a body, not a stack.
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return _problem(500, "internal error", type(exc).__name__)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(LabError, _lab_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(BrokenExecutor, _broken_executor)
    app.add_exception_handler(Exception, _unexpected)
