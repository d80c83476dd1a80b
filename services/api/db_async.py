"""asyncpg's pool behind DB_POOL_MAX slots: a request takes a slot before it acquires a
connection and gives it back after the release, so acquire() never waits for one; when every slot
is taken, requests queue (first come, first served) up to DB_ACQUIRE_TIMEOUT, then get a 503.

Why not `pool.acquire(timeout=...)`: asyncpg arms an asyncio.timeout() for it and another for the
reset on release, about 15 us per request (the lab's largest cost over its floor on /items). A
slot costs an integer when one is free, and one timer only when a request has to wait."""

from __future__ import annotations

import asyncio
import contextlib
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


def _terminate(conn: PoolConnectionProxy) -> None:
    with contextlib.suppress(Exception):  # released meanwhile: nothing left to cut
        conn.terminate()


@functools.cache
def _is_read(query: str) -> bool:
    return query.lstrip().upper().startswith("SELECT")


class AsyncDatabase:
    def __init__(self, s: Settings) -> None:
        self.s = s
        self._free = s.db_pool_max  # slots no request holds
        self._queue: deque[asyncio.Future[bool]] = deque()  # requests waiting for a slot
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
        slot: asyncio.Future[bool] = loop.create_future()  # True: handed a slot; False: expired
        self._queue.append(slot)
        timer = loop.call_later(self.s.db_acquire_timeout, self._expire, slot)
        self._waiting += 1
        try:
            granted = await slot
        except asyncio.CancelledError:
            if slot.done() and not slot.cancelled() and slot.result():
                self._give_slot()  # handed one just as this request was cancelled: pass it on
            raise
        finally:
            timer.cancel()
            self._waiting -= 1
        if not granted:
            if self.pool.get_size() < self.pool.get_max_size():
                # The slots are held by requests still opening connections: the database is
                # slow to answer or unreachable, not busy.
                raise DatabaseUnavailable("connecting to the database timed out")
            raise PoolExhausted(
                f"no database connection free after {self.s.db_acquire_timeout:g} s "
                f"(DB_POOL_MAX={self.s.db_pool_max})"
            )

    def _expire(self, slot: asyncio.Future[bool]) -> None:
        # A result, not an exception: a waiter left in the queue must not keep a traceback (and
        # with it its request) alive until the next release.
        if not slot.done():
            slot.set_result(False)
        # Every waiter has the same timeout, so the expired ones are at the front: drop them.
        while self._queue and self._queue[0].done():
            self._queue.popleft()

    def _give_slot(self) -> None:
        """To the oldest request still waiting, directly (no other can take it first)."""
        while self._queue:
            slot = self._queue.popleft()
            if not slot.done():  # not expired, not cancelled
                slot.set_result(True)
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
                    # The server did not cancel its own statement: the connection is suspect,
                    # and releasing it would first wait for asyncpg's cancel request.
                    conn.terminate()
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
        committed INSERT stays committed), so the answer stands.

        The reset is a query too: a server that stops answering between the two must not hold
        the request (and its slot) forever, so a timer terminates the connection (one TimerHandle;
        `release(timeout=...)` would arm an asyncio.timeout(), several times the cost)."""
        timer = asyncio.get_running_loop().call_later(
            self.s.db_statement_timeout + 1, _terminate, conn
        )
        try:
            await self.pool.release(conn)
        except Exception as exc:  # any reset failure means the same: drop the connection
            logger.warning("dropped a broken pooled connection: %s", type(exc).__name__)
        finally:
            timer.cancel()

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
