"""offload: the async variant, with CPU work sent to an executor.

I/O is awaited exactly as in the async variant (imported from it). CPU work goes to a process
pool by default (CPU_EXECUTOR=process: real parallelism, even for GIL-holding Python) or to a
thread pool (CPU_EXECUTOR=thread: parallel only for work that releases the GIL), CPU_WORKERS big.
The loop stays free to serve I/O while the work runs.
"""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from ..burn import burn
from ..executor import CountingExecutor, make_executor
from ..schemas import CpuKind, CpuResult, Mixed, Work
from ..settings import Settings
from ..shared import MIXED_ITEM_ID, MIXED_WORK, item_or_404, state
from ..sql import ITEM
from . import async_
from .async_ import DB, Upstream, create_order, io_db, io_upstream, read_item

__all__ = ["create_order", "io_db", "io_upstream", "read_item"]
Executor = Annotated[CountingExecutor, state("executor")]


@asynccontextmanager
async def resources(settings: Settings) -> AsyncIterator[dict[str, object]]:
    # Off the loop, like every later replacement (executor.py): spawning the workers takes time.
    executor = await asyncio.to_thread(make_executor, settings.cpu_executor, settings.cpu_workers)
    try:
        async with async_.resources(settings) as io:
            yield {**io, "executor": executor}
    finally:
        # Off the loop: waiting for worker processes to exit must not freeze the last requests.
        await asyncio.to_thread(executor.shutdown, cancel_futures=True)


async def cpu(executor: Executor, work: Work, kind: CpuKind = "python") -> CpuResult:
    done = await asyncio.get_running_loop().run_in_executor(executor, burn, work, kind)
    return CpuResult(**done)


async def mixed(db: DB, upstream: Upstream, executor: Executor) -> Mixed:
    item = item_or_404(await db.fetchrow(ITEM, MIXED_ITEM_ID), MIXED_ITEM_ID)
    call = await upstream.todo()
    work = await asyncio.get_running_loop().run_in_executor(executor, burn, MIXED_WORK, "python")
    return Mixed(item=item, todo=call.todo, cpu=CpuResult(**work))
