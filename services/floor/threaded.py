"""threaded floor: `async def` endpoints sending the sync floor's blocking functions to the
threadpool with run_in_threadpool."""

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool

from services.api.schemas import Item, SlowQuery, UpstreamCall
from services.floor.sync import ITEM_SQL, SLOW_ITEM_SQL, call_upstream, fetch_item, lifespan

app = FastAPI(lifespan=lifespan)


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/items/{item_id}")
async def read_item(item_id: int) -> Item:
    return await run_in_threadpool(fetch_item, ITEM_SQL, item_id)


@app.get("/io/db")
async def io_db(delay_ms: int = 100) -> SlowQuery:
    item = await run_in_threadpool(fetch_item, SLOW_ITEM_SQL, delay_ms, 1)
    return SlowQuery(delay_ms=delay_ms, item=item)


@app.get("/io/upstream")
async def io_upstream(delay_ms: int = 100) -> UpstreamCall:
    return await run_in_threadpool(call_upstream, delay_ms)
