"""sync floor: `def` endpoints (FastAPI's threadpool), psycopg2 behind a queue of connections
that waits when all are busy, one httpx.Client. The blocking and threaded floors call the same
functions."""

import os
import queue
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import psycopg2
from fastapi import FastAPI, HTTPException

from services.api.schemas import Item, SlowQuery, Todo, UpstreamCall
from services.api.sql import ITEM, SLOW_ITEM
from services.floor import DB_POOL_MAX, UPSTREAM_MAX_CONNECTIONS, UPSTREAM_TIMEOUT_S

# psycopg2's placeholders for the same SQL text
ITEM_SQL = ITEM.replace("$1", "%s")
SLOW_ITEM_SQL = SLOW_ITEM.replace("$1", "%s").replace("$2", "%s")

pool: queue.LifoQueue[Any] = queue.LifoQueue()
client: httpx.Client


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    global client
    n = UPSTREAM_MAX_CONNECTIONS
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    for _ in range(DB_POOL_MAX):
        conn = psycopg2.connect(os.environ["DATABASE_URL"])
        conn.autocommit = True
        pool.put(conn)
    with httpx.Client(
        base_url=os.environ["UPSTREAM_URL"], timeout=UPSTREAM_TIMEOUT_S, limits=limits
    ) as client:
        yield
    while not pool.empty():
        pool.get().close()


def fetch_item(sql: str, *args: object) -> Item:
    conn = pool.get()  # waits for a free connection
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            row = cur.fetchone()
    finally:
        pool.put(conn)
    if row is None:
        raise HTTPException(404)
    id_, name, price_cents, created_at = row
    return Item(id=id_, name=name, price_cents=price_cents, created_at=created_at)


def call_upstream(delay_ms: int) -> UpstreamCall:
    start = time.perf_counter()
    response = client.get("/todos/1", params={"delay_ms": delay_ms})
    response.raise_for_status()
    elapsed_ms = (time.perf_counter() - start) * 1000
    todo = Todo.model_validate_json(response.content)
    return UpstreamCall(delay_ms=delay_ms, elapsed_ms=elapsed_ms, todo=todo)


app = FastAPI(lifespan=lifespan)


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/items/{item_id}")
def read_item(item_id: int) -> Item:
    return fetch_item(ITEM_SQL, item_id)


@app.get("/io/db")
def io_db(delay_ms: int = 100) -> SlowQuery:
    return SlowQuery(delay_ms=delay_ms, item=fetch_item(SLOW_ITEM_SQL, delay_ms, 1))


@app.get("/io/upstream")
def io_upstream(delay_ms: int = 100) -> UpstreamCall:
    return call_upstream(delay_ms)
