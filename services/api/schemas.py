"""Request and response models, and the parameter types the endpoints declare."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal

from fastapi import Path, Query
from pydantic import BaseModel, Field, field_validator


@dataclass(frozen=True)
class FromSettings:
    """A query parameter whose default and upper bound are settings (names of Settings fields).

    The router fills them in when the app is built (contract.bind), so the OpenAPI
    document shows the values in force and an endpoint needs no settings of its own."""

    default: str
    maximum: str
    minimum: int
    description: str


@dataclass(frozen=True)
class FromState:
    """An endpoint parameter that is not part of the request: the pool or client the variant's
    lifespan opened, `app.state.<name>` (contract.bind passes it on every call)."""

    name: str


# Largest item id accepted: 2^53 - 1, the largest integer every JSON reader holds exactly (RFC 7493
# I-JSON; JavaScript's MAX_SAFE_INTEGER). Within PostgreSQL's bigint, and, unlike 2^63 - 1, exact
# as the float FastAPI's OpenAPI model turns every `maximum` into (2^63 - 1 became 2^63 there, a
# bound the server did not enforce).
MAX_ID = 2**53 - 1
# Bounded, so a bad value is a 422 naming the parameter: never a 500, never an hour-long sleep.
ItemId = Annotated[int, Path(ge=1, le=MAX_ID, description="primary key of an item")]
DelayMs = Annotated[
    int, FromSettings("default_delay_ms", "max_delay_ms", 0, "how long the slow dependency takes")
]
Work = Annotated[int, FromSettings("default_work", "max_work", 1, "CPU work units (see /cpu)")]
CpuKind = Annotated[
    Literal["python", "native"],
    Query(description="python holds the GIL (pure-Python loop); native releases it (pbkdf2)"),
]


class Item(BaseModel):
    id: int
    name: str
    price_cents: int
    created_at: datetime


class SlowQuery(BaseModel):
    delay_ms: int
    item: Item


class Todo(BaseModel):
    userId: int  # the upstream's own (camelCase) field name
    id: int
    title: str
    completed: bool


class UpstreamCall(BaseModel):
    delay_ms: int
    elapsed_ms: float
    todo: Todo


class CpuResult(BaseModel):
    kind: Literal["python", "native"]
    work: int
    elapsed_ms: float = Field(description="time the work itself took, where it ran")
    pid: int = Field(description="process that did the work (not the API's when offloaded)")
    digest: str


class Mixed(BaseModel):
    item: Item
    todo: Todo
    cpu: CpuResult


class OrderIn(BaseModel):
    item_id: int = Field(ge=1, le=MAX_ID)
    quantity: int = Field(ge=1, le=1_000)
    # The pattern declares "no NUL" in the OpenAPI document (a bound the server enforces).
    note: str | None = Field(None, max_length=200, pattern=r"^[^\x00]*$")

    @field_validator("note")
    @classmethod
    def _storable(cls, note: str | None) -> str | None:
        # PostgreSQL text cannot hold NUL, and UTF-8 cannot hold a lone surrogate: a 422 now
        # instead of a driver error (a 500) at INSERT time.
        if note is not None and ("\x00" in note or _bad_utf8(note)):
            raise ValueError("must be UTF-8 text without NUL characters")
        return note


def _bad_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


class Order(OrderIn):
    id: int
    created_at: datetime


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "not ready"]
    checks: dict[str, str]


class Problem(BaseModel):
    """Body of every error the API answers on purpose (404, 422, 502, 503, 504)."""

    error: str
    detail: str
