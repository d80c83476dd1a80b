"""asyncpg's pool behind DB_POOL_MAX slots: a request takes a slot before it acquires a
connection and gives it back after the release, so acquire() never waits for one; when every slot
is taken, requests queue (first come, first served) up to DB_ACQUIRE_TIMEOUT, then get a 503.

Why not `pool.acquire(timeout=...)`: asyncpg arms an asyncio.timeout() for it and another for the
reset on release, about 15 us per request (the lab's largest cost over its floor on /items). A
slot costs an integer when one is free, and one timer only when a request has to wait."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from collections import deque
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from .errors import DatabaseTimeout, DatabaseUnavailable, PoolExhausted, from_sqlstate
from .settings import Settings
from .sql import PING

logger = logging.getLogger(__name__)
Row = dict[str, Any]
# What a dead or unreachable server looks like through asyncpg.
# InternalClientError: a connection the server dropped mid-operation (seen during a PostgreSQL
# restart: "cannot switch to state 15; another operation is in progress"; `make drill
# DRILL=db-restart VARIANTS=async` reproduces it): the database's failure, not ours.
_UNAVAILABLE = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)


def _translate(exc: Exception) -> Exception:
    if isinstance(exc, asyncpg.PostgresError):
        return from_sqlstate(exc.sqlstate, str(exc)) or exc
    if isinstance(exc, _UNAVAILABLE):
        return DatabaseUnavailable(str(exc) or type(exc).__name__)
    return exc


@functools.cache
def _is_read(query: str) -> bool:
    return query.lstrip().upper().startswith("SELECT")


class AsyncDatabase:
    def __init__(self, s: Settings) -> None:
        self.s = s
        self._free = s.db_pool_max  # slots no request holds
        self._queue: deque[asyncio.Future[None]] = deque()  # requests waiting for a slot
        self._waiting = 0
        # min_size=0 so that a database that is down at start-up does not stop the API:
        # __aenter__ opens DB_POOL_MIN connections best effort, and
        # max_inactive_connection_lifetime=0 keeps them open.
        self.pool = asyncpg.create_pool(
            s.database_url,
            min_size=0,
            max_size=s.db_pool_max,
            max_inactive_connection_lifetime=0,
            timeout=s.db_connect_timeout,
            server_settings={
                "statement_timeout": str(int(s.db_statement_timeout * 1000)),
                "application_name": f"lab-{s.api_variant}-{os.getpid()}",
            },
        )

    async def __aenter__(self) -> AsyncDatabase:
        await self.pool
        conns = await asyncio.gather(
            *(self.pool.acquire() for _ in range(self.s.db_pool_min)), return_exceptions=True
        )
        for conn in conns:
            if not isinstance(conn, BaseException):
                await self._release(conn)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.pool.close()

    async def _wait_for_slot(self) -> None:
        loop = asyncio.get_running_loop()
        slot = loop.create_future()
        self._queue.append(slot)
        timer = loop.call_later(self.s.db_acquire_timeout, self._expire, slot)
        self._waiting += 1
        try:
            await slot
        except asyncio.CancelledError:
            if slot.done() and not slot.cancelled() and slot.exception() is None:
                self._give_slot()  # handed one just as this request was cancelled: pass it on
            raise
        finally:
            timer.cancel()
            self._waiting -= 1

    def _expire(self, slot: asyncio.Future[None]) -> None:
        if not slot.done():  # still queued (a release skips it from now on)
            slot.set_exception(
                PoolExhausted(
                    f"no database connection free after {self.s.db_acquire_timeout:g} s "
                    f"(DB_POOL_MAX={self.s.db_pool_max})"
                )
            )

    def _give_slot(self) -> None:
        """To the oldest request still waiting, directly (no other can take it first)."""
        while self._queue:
            slot = self._queue.popleft()
            if not slot.done():  # not expired, not cancelled
                slot.set_result(None)
                return
        self._free += 1

    async def fetchrow(self, query: str, *args: object) -> Row | None:
        if self._free and not self._queue:
            self._free -= 1
        else:
            await self._wait_for_slot()
        try:
            retry = _is_read(query)
            while True:
                try:
                    conn = await self.pool.acquire()  # with a slot held: a connection is free
                except Exception as exc:  # or opening one failed, within DB_CONNECT_TIMEOUT
                    raise _translate(exc) from exc
                try:
                    # The client-side bound too: a server that stops answering must not hold
                    # us forever.
                    row = await conn.fetchrow(query, *args, timeout=self.s.db_statement_timeout + 1)
                except TimeoutError as exc:
                    raise DatabaseTimeout(
                        f"no answer within {self.s.db_statement_timeout:g} s (DB_STATEMENT_TIMEOUT)"
                    ) from exc
                except Exception as exc:
                    if retry and conn.is_closed():
                        # The server closed a pooled connection (a restart,
                        # pg_terminate_backend) before the pool heard of it: a read is tried
                        # once more, on another connection.
                        retry = False
                        continue  # (after the release below)
                    raise _translate(exc) from exc
                finally:
                    await self._release(conn)
                return None if row is None else dict(row)
        finally:
            self._give_slot()

    async def _release(self, conn: PoolConnectionProxy) -> None:
        """Give the connection back. Its reset can fail when the server dropped it (a database
        restart: InternalClientError): asyncpg has then terminated it and the pool opens a new
        one on demand. That is not this request's failure: its query already finished (a
        committed INSERT stays committed), so the answer stands."""
        try:
            await self.pool.release(conn)
        except Exception as exc:  # any reset failure means the same: drop the connection
            logger.warning("dropped a broken pooled connection: %s", type(exc).__name__)

    async def ping(self) -> None:
        """Readiness: can the database be reached now? On a connection of its own, opened and
        closed here, never one from the pool: pool.acquire() waits for a free connection, and a
        probe queued there would report a busy pool as a dead database."""
        try:
            conn = await asyncpg.connect(
                self.s.database_url,
                timeout=self.s.db_connect_timeout,
                server_settings={
                    "statement_timeout": str(int(self.s.db_statement_timeout * 1000)),
                    "application_name": f"lab-{self.s.api_variant}-{os.getpid()}-readyz",
                },
            )
        except Exception as exc:
            raise _translate(exc) from exc
        try:
            await conn.fetchval(PING)
        except Exception as exc:
            raise _translate(exc) from exc
        finally:
            await conn.close(timeout=self.s.db_connect_timeout)

    def stats(self) -> dict[str, int]:
        size = self.pool.get_size()
        return {
            "size": size,
            "in_use": size - self.pool.get_idle_size(),
            "waiting": self._waiting,
            "max": self.pool.get_max_size(),
        }
