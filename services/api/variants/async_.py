"""async: `async def` endpoints, asyncpg, one shared httpx.AsyncClient, CPU inline.

While a request awaits the database or the upstream, the event loop serves the others: thousands
of slow I/O calls in flight on one thread, no threadpool involved. But CPU work inline runs on
the loop itself and stops every other request while it runs (see /cpu, and the offload variant).
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from ..burn import burn
from ..db_async import AsyncDatabase
from ..schemas import (
    CpuKind,
    CpuResult,
    DelayMs,
    Item,
    ItemId,
    Mixed,
    Order,
    OrderIn,
    SlowQuery,
    UpstreamCall,
    Work,
)
from ..settings import Settings
from ..shared import MIXED_ITEM_ID, MIXED_WORK, item_or_404, order_or_422, state
from ..sql import INSERT_ORDER, ITEM, SLOW_ITEM
from ..upstream import AsyncUpstream

DB = Annotated[AsyncDatabase, state("db")]
Upstream = Annotated[AsyncUpstream, state("upstream")]


@asynccontextmanager
async def resources(settings: Settings) -> AsyncIterator[dict[str, object]]:
    async with AsyncDatabase(settings) as db, AsyncUpstream(settings) as upstream:
        yield {"db": db, "upstream": upstream}


async def read_item(item_id: ItemId, db: DB) -> Item:
    return item_or_404(await db.fetchrow(ITEM, item_id), item_id)


async def io_db(db: DB, delay_ms: DelayMs) -> SlowQuery:
    row = await db.fetchrow(SLOW_ITEM, delay_ms, 1)
    return SlowQuery(delay_ms=delay_ms, item=item_or_404(row, 1))


async def io_upstream(upstream: Upstream, delay_ms: DelayMs) -> UpstreamCall:
    return await upstream.todo(delay_ms)


async def cpu(work: Work, kind: CpuKind = "python") -> CpuResult:
    return CpuResult(**burn(work, kind))  # on the loop: nothing else runs until it returns


async def mixed(db: DB, upstream: Upstream) -> Mixed:
    item = item_or_404(await db.fetchrow(ITEM, MIXED_ITEM_ID), MIXED_ITEM_ID)
    call = await upstream.todo()
    return Mixed(item=item, todo=call.todo, cpu=CpuResult(**burn(MIXED_WORK, "python")))


async def create_order(order: OrderIn, db: DB) -> Order:
    row = await db.fetchrow(INSERT_ORDER, order.item_id, order.quantity, order.note)
    return order_or_422(row, order.item_id)
