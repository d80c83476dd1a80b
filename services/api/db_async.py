"""asyncpg's pool: acquire() already waits, up to DB_ACQUIRE_TIMEOUT, then we answer 503."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
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


class _StaleConnection(Exception):
    """A read failed because its pooled connection had been closed by the server."""


@functools.cache
def _is_read(query: str) -> bool:
    return query.lstrip().upper().startswith("SELECT")


class AsyncDatabase:
    def __init__(self, s: Settings) -> None:
        self.s = s
        self._waiting = 0
        # fetchrow calls under way, from before acquire() to after release(): the only borrower
        self._borrowed = 0
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

    async def _acquire(self) -> PoolConnectionProxy:
        # While at most DB_POOL_MAX calls are under way (this one included), a connection is
        # free now and acquire() does not wait (opening one is bounded by DB_CONNECT_TIMEOUT):
        # no timeout to arm. asyncpg's costs a timer and a cancel scope per call, and the pool
        # reuses it for the reset query on release.
        if self._borrowed <= self.s.db_pool_max:
            try:
                return await self.pool.acquire()
            except Exception as exc:
                raise _translate(exc) from exc
        self._waiting += 1
        try:
            return await self.pool.acquire(timeout=self.s.db_acquire_timeout)
        except TimeoutError as exc:
            # acquire's timeout also covers opening a new connection: only a full pool is
            # "exhausted"; otherwise the database did not answer in time.
            if self.pool.get_size() < self.pool.get_max_size():
                raise DatabaseUnavailable("connecting to the database timed out") from exc
            raise PoolExhausted(
                f"no database connection free after {self.s.db_acquire_timeout:g} s "
                f"(DB_POOL_MAX={self.s.db_pool_max})"
            ) from exc
        except Exception as exc:
            raise _translate(exc) from exc
        finally:
            self._waiting -= 1

    async def fetchrow(self, query: str, *args: object) -> Row | None:
        self._borrowed += 1
        try:
            try:
                return await self._fetchrow(query, args, retry=_is_read(query))
            except _StaleConnection:
                # The server closed a pooled connection (a restart, pg_terminate_backend) before
                # the pool heard of it: a read is tried once more, on another connection.
                return await self._fetchrow(query, args, retry=False)
        finally:
            self._borrowed -= 1

    async def _fetchrow(self, query: str, args: tuple[object, ...], retry: bool) -> Row | None:
        conn = await self._acquire()
        try:
            # The client-side bound too: a server that stops answering must not hold us forever.
            row = await conn.fetchrow(query, *args, timeout=self.s.db_statement_timeout + 1)
        except TimeoutError as exc:
            raise DatabaseTimeout(
                f"no answer within {self.s.db_statement_timeout:g} s (DB_STATEMENT_TIMEOUT)"
            ) from exc
        except Exception as exc:
            if retry and conn.is_closed():
                raise _StaleConnection from exc
            raise _translate(exc) from exc
        finally:
            await self._release(conn)
        return None if row is None else dict(row)

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
