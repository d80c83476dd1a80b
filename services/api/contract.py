"""The routes every variant serves, declared once; a variant module supplies only the endpoints.

`build_router(module)` registers the module's functions under the same paths, response models and
status codes, so what differs between variants is exactly what is inside those functions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError

from .errors import NotFound
from .schemas import CpuResult, Item, Mixed, Order, Problem, SlowQuery, UpstreamCall

MIXED_ITEM_ID = 42
MIXED_WORK = 2  # "a little CPU": about 2 ms


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


def build_router(variant: ModuleType) -> APIRouter:
    router = APIRouter()
    for r in ROUTES:
        responses: dict[int | str, dict[str, Any]] = {code: {"model": Problem} for code in r.errors}
        router.add_api_route(
            r.path,
            getattr(variant, r.endpoint),
            methods=[r.method],
            response_model=r.model,
            status_code=r.status_code,
            summary=r.summary,
            responses=responses,
        )
    return router


def state(name: str) -> Callable[[Request], Any]:
    """A dependency returning app.state.<name> (the pools the variant's lifespan opened).

    async on purpose: a `def` dependency would take a threadpool token on every request."""

    async def dependency(request: Request) -> Any:
        return getattr(request.app.state, name)

    return Depends(dependency)


def item_or_404(row: dict[str, Any] | None, item_id: int) -> Item:
    if row is None:
        raise NotFound(f"item {item_id} does not exist")
    return Item.model_validate(row)


def order_or_422(row: dict[str, Any] | None, item_id: int) -> Order:
    if row is None:
        # The same 422 shape as every other bad parameter: the client parses one format.
        raise RequestValidationError(
            [{"type": "value_error", "loc": ("body", "item_id"), "input": item_id,
              "msg": f"item {item_id} does not exist"}]
        )  # fmt: skip
    return Order.model_validate(row)
