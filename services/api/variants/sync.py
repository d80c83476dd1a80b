"""sync: `def` endpoints, psycopg2, a sync httpx client, CPU inline.

FastAPI runs every `def` endpoint in AnyIO's threadpool, so blocking calls are fine here: they
block a worker thread, not the event loop. The price: at most THREADPOOL_TOKENS (default 40)
requests run at once per process; the rest queue for a token.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from ..burn import burn
from ..db_sync import SyncDatabase
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
from ..upstream import SyncUpstream

DB = Annotated[SyncDatabase, state("db")]
Upstream = Annotated[SyncUpstream, state("upstream")]


@asynccontextmanager
async def resources(settings: Settings) -> AsyncIterator[dict[str, object]]:
    with SyncDatabase(settings) as db, SyncUpstream(settings) as upstream:
        yield {"db": db, "upstream": upstream}


def read_item(item_id: ItemId, db: DB) -> Item:
    return item_or_404(db.fetchrow(ITEM, item_id), item_id)


def io_db(db: DB, delay_ms: DelayMs) -> SlowQuery:
    return SlowQuery(delay_ms=delay_ms, item=item_or_404(db.fetchrow(SLOW_ITEM, delay_ms, 1), 1))


def io_upstream(upstream: Upstream, delay_ms: DelayMs) -> UpstreamCall:
    return upstream.todo(delay_ms)


def cpu(work: Work, kind: CpuKind = "python") -> CpuResult:
    return CpuResult(**burn(work, kind))


def mixed(db: DB, upstream: Upstream) -> Mixed:
    item = item_or_404(db.fetchrow(ITEM, MIXED_ITEM_ID), MIXED_ITEM_ID)
    call = upstream.todo()
    return Mixed(item=item, todo=call.todo, cpu=CpuResult(**burn(MIXED_WORK, "python")))


def create_order(order: OrderIn, db: DB) -> Order:
    row = db.fetchrow(INSERT_ORDER, order.item_id, order.quantity, order.note)
    return order_or_422(row, order.item_id)
