"""psycopg2 behind a pool that *waits* for a free connection (psycopg2's own pools raise
PoolError the moment they are exhausted), up to DB_ACQUIRE_TIMEOUT, then answers 503."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg2
import psycopg2.extensions

from .errors import DatabaseUnavailable, PoolExhausted
from .settings import Settings

Row = dict[str, Any]
_PLACEHOLDER = re.compile(r"\$(\d+)")


def _to_pyformat(query: str) -> str:
    """`$1` (asyncpg) -> `%(p1)s` (psycopg2): one SQL text for both drivers, reuse allowed."""
    return _PLACEHOLDER.sub(r"%(p\1)s", query)


class SyncDatabase:
    def __init__(self, s: Settings) -> None:
        self.dsn, self.min_size, self.max_size = s.database_url, s.db_pool_min, s.db_pool_max
        self.acquire_timeout, self.connect_timeout = s.db_acquire_timeout, s.db_connect_timeout
        # A slow query may legitimately last MAX_DELAY_MS; anything longer is a stuck statement.
        self.statement_timeout_ms = s.max_delay_ms + 5_000
        self._idle: list[psycopg2.extensions.connection] = []
        self._size = self._in_use = self._waiting = 0
        self._cond = threading.Condition()

    def __enter__(self) -> SyncDatabase:
        # Best effort: a database that is down at start-up must not stop the API (it answers 503).
        try:
            conns = [self._connect() for _ in range(self.min_size)]
        except DatabaseUnavailable:
            conns = []
        with self._cond:
            self._idle.extend(conns)
            self._size += len(conns)
        return self

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            for conn in self._idle:
                conn.close()
            self._size -= len(self._idle)
            self._idle.clear()

    def _connect(self) -> psycopg2.extensions.connection:
        try:
            conn = psycopg2.connect(
                self.dsn,
                connect_timeout=max(1, round(self.connect_timeout)),
                options=f"-c statement_timeout={self.statement_timeout_ms}",
            )
        except psycopg2.Error as exc:
            raise DatabaseUnavailable(str(exc).strip() or type(exc).__name__) from exc
        conn.autocommit = True  # one statement, one transaction: a 2xx means committed
        return conn

    def _acquire(self) -> psycopg2.extensions.connection:
        deadline = time.monotonic() + self.acquire_timeout
        with self._cond:
            self._waiting += 1
            try:
                while not self._idle and self._size >= self.max_size:
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
                self._waiting -= 1
        try:
            return self._connect()
        except DatabaseUnavailable:
            self._release(None)
            raise

    def _release(self, conn: psycopg2.extensions.connection | None) -> None:
        with self._cond:
            self._in_use -= 1
            if conn is None or conn.closed:
                self._size -= 1
            else:
                self._idle.append(conn)
            self._cond.notify()

    @contextmanager
    def connection(self) -> Iterator[psycopg2.extensions.connection]:
        conn = self._acquire()
        try:
            yield conn
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
            conn.close()  # broken (server restarted, network gone): never hand it out again
            raise DatabaseUnavailable(str(exc).strip() or type(exc).__name__) from exc
        finally:
            self._release(conn)

    def fetchrow(self, query: str, *args: object) -> Row | None:
        params = {f"p{i}": arg for i, arg in enumerate(args, start=1)}
        with self.connection() as conn, conn.cursor() as cur:
            cur.execute(_to_pyformat(query), params)
            row = cur.fetchone()
            if row is None:
                return None
            return dict(zip([c.name for c in cur.description], row, strict=True))

    def stats(self) -> dict[str, int]:
        return {
            "size": self._size,
            "in_use": self._in_use,
            "waiting": self._waiting,
            "max": self.max_size,
        }
