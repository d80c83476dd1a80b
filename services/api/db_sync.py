"""psycopg2 behind a pool that *waits* for a free connection (psycopg2's own pools raise
PoolError the moment they are exhausted), first come first served, up to DB_ACQUIRE_TIMEOUT,
then answers 503."""

from __future__ import annotations

import math
import os
import re
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg2
import psycopg2.extensions

from .errors import DatabaseTimeout, DatabaseUnavailable, LabError, PoolExhausted, from_sqlstate
from .settings import Settings
from .sql import PING

Row = dict[str, Any]
Connection = psycopg2.extensions.connection
_PLACEHOLDER = re.compile(r"\$(\d+)")


def _to_pyformat(query: str) -> str:
    """`$1` (asyncpg) -> `%(p1)s` (psycopg2): one SQL text for both drivers, reuse allowed."""
    return _PLACEHOLDER.sub(r"%(p\1)s", query)


def _translate(exc: psycopg2.Error) -> LabError | None:
    message = str(exc).strip() or type(exc).__name__
    mapped = from_sqlstate(exc.pgcode, message)
    if mapped is None and isinstance(exc, psycopg2.OperationalError | psycopg2.InterfaceError):
        mapped = DatabaseUnavailable(message)  # no SQLSTATE: the connection itself failed
    return mapped


class SyncDatabase:
    def __init__(self, s: Settings) -> None:
        self.dsn, self.min_size, self.max_size = s.database_url, s.db_pool_min, s.db_pool_max
        self.acquire_timeout, self.connect_timeout = s.db_acquire_timeout, s.db_connect_timeout
        self.statement_timeout_ms = int(s.db_statement_timeout * 1000)
        # Names this process's sessions in pg_stat_activity (and lets a test find them).
        self.application_name = f"lab-{s.api_variant}-{os.getpid()}"
        self._idle: list[Connection] = []
        self._size = self._in_use = 0
        self._queue: deque[object] = deque()  # waiting threads, oldest first
        self._cond = threading.Condition()

    def __enter__(self) -> SyncDatabase:
        # Best effort: a database that is down at start-up must not stop the API (it answers 503).
        for _ in range(self.min_size):
            try:
                conn = self._connect()
            except DatabaseUnavailable:
                break
            with self._cond:
                self._idle.append(conn)
                self._size += 1
        return self

    def __exit__(self, *exc: object) -> None:
        self._drop_idle()

    def _connect(self, application_name: str | None = None) -> Connection:
        try:
            conn = psycopg2.connect(
                self.dsn,
                connect_timeout=max(1, math.ceil(self.connect_timeout)),  # libpq wants whole s
                options=f"-c statement_timeout={self.statement_timeout_ms}",
                application_name=application_name or self.application_name,
                # A peer that vanishes without a FIN is noticed in ~10 s, not TCP's ~15 min.
                keepalives=1, keepalives_idle=5, keepalives_interval=2, keepalives_count=3,
            )  # fmt: skip
        except psycopg2.Error as exc:
            raise DatabaseUnavailable(str(exc).strip() or type(exc).__name__) from exc
        conn.autocommit = True  # one statement, one transaction: a 2xx means committed
        return conn

    def _acquire(self) -> Connection:
        deadline = time.monotonic() + self.acquire_timeout
        me = object()
        with self._cond:
            self._queue.append(me)
            try:
                # FIFO: a thread that just arrived must not take the connection a waiter was
                # woken for (that would turn a fair queue into spurious 503s and a worse p99).
                while self._queue[0] is not me or (not self._idle and self._size >= self.max_size):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise PoolExhausted(
                            f"no database connection free after {self.acquire_timeout:g} s "
                            f"(DB_POOL_MAX={self.max_size})"
                        )
                    self._cond.wait(remaining)
                self._in_use += 1
                if self._idle:
                    return self._idle.pop()
                self._size += 1  # reserve the slot now, connect outside the lock
            finally:
                self._queue.remove(me)
                self._cond.notify_all()  # the next in line re-checks
        try:
            return self._connect()
        except BaseException:
            self._release(None)
            raise

    def _release(self, conn: Connection | None) -> None:
        with self._cond:
            self._in_use -= 1
            if conn is None or conn.closed:
                self._size -= 1
            else:
                self._idle.append(conn)
            self._cond.notify_all()

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        conn = self._acquire()
        try:
            yield conn
        except psycopg2.Error as exc:
            mapped = _translate(exc)
            if mapped is None:
                raise
            if not isinstance(mapped, DatabaseTimeout):
                conn.close()  # broken (server restarted, network gone): never hand it out again
            if isinstance(mapped, DatabaseUnavailable):
                self._drop_idle()  # they were opened to the same server: likely broken too
            raise mapped from exc
        finally:
            self._release(conn)

    def _drop_idle(self) -> None:
        with self._cond:
            for conn in self._idle:
                conn.close()
            self._size -= len(self._idle)
            self._idle.clear()

    def fetchrow(self, query: str, *args: object) -> Row | None:
        # psycopg2 notices that the server closed an idle pooled connection (a restart, an idle
        # timeout) only when it uses it; asyncpg's pool notices on its own. So a read that
        # fails that way is tried once more, on a new connection. Never a write: it may have
        # been committed before the connection broke.
        retries = 1 if query.lstrip().upper().startswith("SELECT") else 0
        while True:
            try:
                return self._fetchrow(query, args)
            except DatabaseUnavailable:
                if retries == 0:
                    raise
                retries -= 1

    def _fetchrow(self, query: str, args: tuple[object, ...]) -> Row | None:
        params = {f"p{i}": arg for i, arg in enumerate(args, start=1)}
        with self.connection() as conn, conn.cursor() as cur:
            cur.execute(_to_pyformat(query), params)
            row = cur.fetchone()
            if row is None or cur.description is None:  # no row, or a statement without rows
                return None
            return dict(zip([c.name for c in cur.description], row, strict=True))

    def ping(self) -> None:
        """Readiness: can the database be reached now? On a connection of its own, opened and
        closed here, never one from the pool: waiting in the pool's queue would report a busy
        pool as a dead database (and a probe must not take a slot from the requests)."""
        conn = self._connect(application_name=f"{self.application_name}-readyz")
        try:
            with conn.cursor() as cur:
                cur.execute(PING)
        except psycopg2.Error as exc:
            raise _translate(exc) or DatabaseUnavailable(str(exc).strip()) from exc
        finally:
            conn.close()

    def stats(self) -> dict[str, int]:
        return {
            "size": self._size,
            "in_use": self._in_use,
            "waiting": len(self._queue),
            "max": self.max_size,
        }
