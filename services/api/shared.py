"""What the variants' endpoints share: the pools they depend on, row -> model, /mixed sizes."""

from __future__ import annotations

from typing import Any

from fastapi.exceptions import RequestValidationError

from .errors import NotFound
from .schemas import FromState, Item, Order

MIXED_ITEM_ID = 42
MIXED_WORK = 2  # "a little CPU": about 2 ms


def state(name: str) -> FromState:
    """Marks a parameter as app.state.<name> (the pools the variant's lifespan opened), e.g.
    `DB = Annotated[AsyncDatabase, state("db")]`; the router passes it (contract.bind)."""
    return FromState(name)


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
