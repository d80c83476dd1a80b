"""blocking floor: `async def` endpoints calling the sync floor's blocking functions directly
(the anti-pattern the lab's blocking variant shows, at its own cost and no more)."""

from fastapi import FastAPI

from services.api.schemas import Item, SlowQuery, UpstreamCall
from services.floor.sync import ITEM_SQL, SLOW_ITEM_SQL, call_upstream, fetch_item, lifespan

app = FastAPI(lifespan=lifespan)


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/items/{item_id}")
async def read_item(item_id: int) -> Item:
    return fetch_item(ITEM_SQL, item_id)


@app.get("/io/db")
async def io_db(delay_ms: int = 100) -> SlowQuery:
    return SlowQuery(delay_ms=delay_ms, item=fetch_item(SLOW_ITEM_SQL, delay_ms, 1))


@app.get("/io/upstream")
async def io_upstream(delay_ms: int = 100) -> UpstreamCall:
    return call_upstream(delay_ms)
