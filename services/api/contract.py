"""The routes every variant serves, declared once; a variant module supplies only the endpoints.

`add_routes(router, module, settings, state)` registers the module's functions under the same
paths, response models and status codes, so what differs between variants is exactly what is
inside them.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, get_args, get_origin

from fastapi import APIRouter, Query

from .schemas import (
    CpuResult,
    FromSettings,
    FromState,
    Item,
    Mixed,
    Order,
    Problem,
    SlowQuery,
    UpstreamCall,
)
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


def add_routes(
    router: APIRouter, variant: types.ModuleType, settings: Settings, state: object
) -> None:
    """Register the contract's routes on `router`: the app's own router, not an included one
    (FastAPI resolves an included router's routes through one more layer on every request)."""
    for r in ROUTES:
        responses: dict[int | str, dict[str, Any]] = {code: {"model": Problem} for code in r.errors}
        router.add_api_route(
            r.path,
            bind(getattr(variant, r.endpoint), settings, state),
            methods=[r.method],
            response_model=r.model,
            status_code=r.status_code,
            summary=r.summary,
            responses=responses,
        )


def bind(fn: Callable[..., Any], settings: Settings, state: object) -> Callable[..., Any]:
    """`fn` as FastAPI should see it: each `FromSettings` parameter a Query whose default and
    maximum are those settings, and each `FromState` parameter (a pool the lifespan opened)
    gone from the signature and passed as `getattr(state, name)` on every call. Not a FastAPI
    dependency: resolving one costs more per request than the rest of the lab's bookkeeping.

    A new function, never `fn` itself: two apps built with different settings in one process
    stay independent; and as sync or async as `fn`, so FastAPI runs it where `fn` would run."""
    sig = inspect.signature(fn, eval_str=True)
    params = []
    from_state: list[tuple[str, str]] = []  # (parameter, attribute of state)
    for p in sig.parameters.values():
        meta = _metadata(p.annotation)
        resource = next((m for m in meta if isinstance(m, FromState)), None)
        if resource is not None:
            from_state.append((p.name, resource.name))
            continue
        marker = next((m for m in meta if isinstance(m, FromSettings)), None)
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
    bound: Callable[..., Any]
    if inspect.iscoroutinefunction(fn):

        async def bound_async(**kwargs: Any) -> Any:
            for param, name in from_state:
                kwargs[param] = getattr(state, name)
            return await fn(**kwargs)

        bound = bound_async
    else:

        def bound_sync(**kwargs: Any) -> Any:
            for param, name in from_state:
                kwargs[param] = getattr(state, name)
            return fn(**kwargs)

        bound = bound_sync
    bound.__name__, bound.__qualname__ = fn.__name__, fn.__qualname__
    bound.__doc__, bound.__module__ = fn.__doc__, fn.__module__
    bound.__dict__["__signature__"] = sig.replace(parameters=params)  # what inspect reads
    return bound


def _metadata(annotation: object) -> tuple[object, ...]:
    return get_args(annotation)[1:] if get_origin(annotation) is Annotated else ()
