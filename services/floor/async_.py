"""async floor: `async def` endpoints, an asyncpg pool, one httpx.AsyncClient on aiohttp's
transport (the lab's async and offload variants use the same)."""

import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import httpx
from fastapi import FastAPI, HTTPException
from httpx_aiohttp import AiohttpTransport

from services.api.schemas import Item, SlowQuery, Todo, UpstreamCall
from services.api.sql import ITEM, SLOW_ITEM
from services.floor import DB_POOL_MAX, UPSTREAM_MAX_CONNECTIONS, UPSTREAM_TIMEOUT_S

pool: asyncpg.Pool
client: httpx.AsyncClient


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    global pool, client
    n = UPSTREAM_MAX_CONNECTIONS
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    pool = await asyncpg.create_pool(os.environ["DATABASE_URL"], min_size=2, max_size=DB_POOL_MAX)
    client = httpx.AsyncClient(
        base_url=os.environ["UPSTREAM_URL"],
        timeout=UPSTREAM_TIMEOUT_S,
        limits=limits,
        transport=AiohttpTransport(limits=limits),
    )
    async with pool, client:
        yield


app = FastAPI(lifespan=lifespan)


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/items/{item_id}")
async def read_item(item_id: int) -> Item:
    row = await pool.fetchrow(ITEM, item_id)
    if row is None:
        raise HTTPException(404)
    return Item.model_validate(dict(row))


@app.get("/io/db")
async def io_db(delay_ms: int = 100) -> SlowQuery:
    row = await pool.fetchrow(SLOW_ITEM, delay_ms, 1)
    if row is None:
        raise HTTPException(404)
    return SlowQuery(delay_ms=delay_ms, item=Item.model_validate(dict(row)))


@app.get("/io/upstream")
async def io_upstream(delay_ms: int = 100) -> UpstreamCall:
    start = time.perf_counter()
    response = await client.get("/todos/1", params={"delay_ms": delay_ms})
    response.raise_for_status()
    elapsed_ms = (time.perf_counter() - start) * 1000
    todo = Todo.model_validate_json(response.content)
    return UpstreamCall(delay_ms=delay_ms, elapsed_ms=elapsed_ms, todo=todo)
