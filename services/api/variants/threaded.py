"""threaded: `async def` endpoints that call the sync drivers through run_in_threadpool.

The fix when a library has no async API: keep `async def`, and send each blocking call to AnyIO's
threadpool, where it holds one token (THREADPOOL_TOKENS, default 40) while it waits. The same
psycopg2 and httpx.Client as the sync variant, so the same ceiling: 40 calls at once per process.
Unlike `def` endpoints, the response is validated on the loop: one threadpool trip, not two.
"""

from fastapi.concurrency import run_in_threadpool

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
    return item_or_404(await run_in_threadpool(db.fetchrow, ITEM, item_id), item_id)


async def io_db(db: DB, delay_ms: DelayMs) -> SlowQuery:
    row = await run_in_threadpool(db.fetchrow, SLOW_ITEM, delay_ms, 1)
    return SlowQuery(delay_ms=delay_ms, item=item_or_404(row, 1))


async def io_upstream(upstream: Upstream, delay_ms: DelayMs) -> UpstreamCall:
    return await run_in_threadpool(upstream.todo, delay_ms)


async def cpu(work: Work, kind: CpuKind = "python") -> CpuResult:
    return CpuResult(**await run_in_threadpool(burn, work, kind))


async def mixed(db: DB, upstream: Upstream) -> Mixed:
    item = item_or_404(await run_in_threadpool(db.fetchrow, ITEM, MIXED_ITEM_ID), MIXED_ITEM_ID)
    call = await run_in_threadpool(upstream.todo)
    work = await run_in_threadpool(burn, MIXED_WORK, "python")
    return Mixed(item=item, todo=call.todo, cpu=CpuResult(**work))


async def create_order(order: OrderIn, db: DB) -> Order:
    row = await run_in_threadpool(
        db.fetchrow, INSERT_ORDER, order.item_id, order.quantity, order.note
    )
    return order_or_422(row, order.item_id)
