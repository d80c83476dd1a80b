"""The routes every variant serves, declared once; a variant module supplies only the endpoints.

`build_router(module, settings)` registers the module's functions under the same paths, response
models and status codes, so what differs between variants is exactly what is inside them.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, get_args, get_origin

from fastapi import APIRouter, Query

from .schemas import CpuResult, FromSettings, Item, Mixed, Order, Problem, SlowQuery, UpstreamCall
from .settings import Settings


@dataclass(frozen=True)
class Route:
    endpoint: str  # name of the function in the variant module
    method: str
    path: str
    model: type
    summary: str
    status_code: int = 200
    errors: tuple[int, ...] = ()


ROUTES = (
    Route("read_item", "GET", "/items/{item_id}", Item, "Primary-key read", errors=(404, 503)),
    Route("io_db", "GET", "/io/db", SlowQuery, "Slow query (pg_sleep)", errors=(503,)),
    Route("io_upstream", "GET", "/io/upstream", UpstreamCall, "Slow upstream call",
          errors=(502, 503, 504)),
    Route("cpu", "GET", "/cpu", CpuResult, "CPU work (python holds the GIL, native releases it)"),
    Route("mixed", "GET", "/mixed", Mixed, "One query, one upstream call, a little CPU",
          errors=(502, 503, 504)),
    Route("create_order", "POST", "/orders", Order, "Insert an order (the write path)",
          status_code=201, errors=(503,)),
)  # fmt: skip


def build_router(variant: types.ModuleType, settings: Settings) -> APIRouter:
    router = APIRouter()
    for r in ROUTES:
        responses: dict[int | str, dict[str, Any]] = {code: {"model": Problem} for code in r.errors}
        router.add_api_route(
            r.path,
            with_settings(getattr(variant, r.endpoint), settings),
            methods=[r.method],
            response_model=r.model,
            status_code=r.status_code,
            summary=r.summary,
            responses=responses,
        )
    return router


def with_settings(fn: Callable[..., Any], settings: Settings) -> Callable[..., Any]:
    """`fn` with each `FromSettings` parameter turned into a Query whose default and maximum are
    those settings. A copy of the function (same code, so still sync or async), never `fn`
    itself: two apps built with different settings in one process stay independent."""
    sig = inspect.signature(fn, eval_str=True)
    params = []
    for p in sig.parameters.values():
        marker = next((m for m in _metadata(p.annotation) if isinstance(m, FromSettings)), None)
        if marker is not None:
            query = Query(
                ge=marker.minimum,
                le=getattr(settings, marker.maximum),
                description=marker.description,
            )
            p = p.replace(
                annotation=Annotated[get_args(p.annotation)[0], query],
                default=getattr(settings, marker.default),
            )
        # keyword-only: a parameter that gained a default may precede one without (FastAPI
        # passes every argument by name anyway)
        params.append(p.replace(kind=inspect.Parameter.KEYWORD_ONLY))
    copy = types.FunctionType(
        fn.__code__, fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__
    )
    copy.__kwdefaults__ = fn.__kwdefaults__
    copy.__doc__, copy.__module__, copy.__qualname__ = fn.__doc__, fn.__module__, fn.__qualname__
    copy.__dict__["__signature__"] = sig.replace(parameters=params)  # what inspect reads
    return copy


def _metadata(annotation: object) -> tuple[object, ...]:
    return get_args(annotation)[1:] if get_origin(annotation) is Annotated else ()
