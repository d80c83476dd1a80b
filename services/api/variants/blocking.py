"""blocking: ANTI-PATTERN, kept on purpose: `async def` endpoints that call blocking code.

Line for line the sync variant with `def` turned into `async def`. FastAPI now runs each endpoint
on the event loop itself, so every psycopg2 query, every sync HTTP call and every CPU loop stops
the whole process: one request at a time, whatever the load (about 1 / latency req/s).
"""

from ..burn import burn
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
from ..shared import MIXED_ITEM_ID, MIXED_WORK, item_or_404, order_or_422
from ..sql import INSERT_ORDER, ITEM, SLOW_ITEM
from .sync import DB, Upstream, resources  # the very same blocking drivers as the sync variant

__all__ = ["resources"]


async def read_item(item_id: ItemId, db: DB) -> Item:
    return item_or_404(db.fetchrow(ITEM, item_id), item_id)  # blocks the loop


async def io_db(db: DB, delay_ms: DelayMs) -> SlowQuery:
    # pg_sleep through psycopg2: the loop is frozen for delay_ms, every other request waits.
    return SlowQuery(delay_ms=delay_ms, item=item_or_404(db.fetchrow(SLOW_ITEM, delay_ms, 1), 1))


async def io_upstream(upstream: Upstream, delay_ms: DelayMs) -> UpstreamCall:
    return upstream.todo(delay_ms)  # a sync HTTP call inside async def: the loop waits with it


async def cpu(work: Work, kind: CpuKind = "python") -> CpuResult:
    return CpuResult(**burn(work, kind))  # even `native` blocks here: the loop thread is busy


async def mixed(db: DB, upstream: Upstream) -> Mixed:
    item = item_or_404(db.fetchrow(ITEM, MIXED_ITEM_ID), MIXED_ITEM_ID)
    call = upstream.todo()
    return Mixed(item=item, todo=call.todo, cpu=CpuResult(**burn(MIXED_WORK, "python")))


async def create_order(order: OrderIn, db: DB) -> Order:
    row = db.fetchrow(INSERT_ORDER, order.item_id, order.quantity, order.note)
    return order_or_422(row, order.item_id)
