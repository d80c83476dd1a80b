"""Failures of a dependency, turned into a status code and a JSON body (never a traceback)."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

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


def _problem(status: int, error: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status)


async def _lab_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, LabError)
    return _problem(exc.status_code, exc.error, exc.detail)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # Logged with its traceback for the operator; the client gets a body, not a stack.
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return _problem(500, "internal error", type(exc).__name__)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(LabError, _lab_error)
    app.add_exception_handler(Exception, _unexpected)
