"""psycopg2 behind a pool that *waits* for a free connection (psycopg2's own pools raise
PoolError the moment they are exhausted), first come first served, up to DB_ACQUIRE_TIMEOUT,
then answers 503."""

from __future__ import annotations

import functools
import math
import os
import re
import threading
from collections import deque
from typing import Any

import psycopg2
import psycopg2.extensions

from .errors import DatabaseTimeout, DatabaseUnavailable, LabError, PoolExhausted, from_sqlstate
from .settings import Settings
from .sql import PING

Row = dict[str, Any]
Connection = psycopg2.extensions.connection
_PLACEHOLDER = re.compile(r"\$(\d+)")


@functools.cache
def _psycopg2_sql(query: str) -> tuple[str, tuple[int, ...] | None]:
    """`$n` (asyncpg) -> `%s` (psycopg2): one SQL text for both drivers. Also the order in which
    the arguments fill the `%s` (None: as given), since `$n` may come out of order or twice."""
    order = tuple(int(n) - 1 for n in _PLACEHOLDER.findall(query))
    return _PLACEHOLDER.sub("%s", query), None if order == tuple(range(len(order))) else order


def _translate(exc: psycopg2.Error) -> LabError | None:
    message = str(exc).strip() or type(exc).__name__
    mapped = from_sqlstate(exc.pgcode, message)
    if mapped is None and isinstance(exc, psycopg2.OperationalError | psycopg2.InterfaceError):
        mapped = DatabaseUnavailable(message)  # no SQLSTATE: the connection itself failed
    return mapped


@functools.cache
def _is_read(query: str) -> bool:
    return query.lstrip().upper().startswith("SELECT")


class _Waiter:
    """A thread queued for a connection: what a release hands it, and a bare lock, taken at
    birth, that the release lets go of to wake it. Not a threading.Event: that is a Condition
    and two locks driven by Python code, and with 40 threads on 20 connections (`threaded`
    on /items) nearly every query waits."""

    __slots__ = ("_asleep", "conn", "granted")

    def __init__(self) -> None:
        self._asleep = threading.Lock()
        self._asleep.acquire()
        self.conn: Connection | None = None
        self.granted = False

    def wait(self, timeout: float) -> bool:
        return self._asleep.acquire(timeout=timeout)

    def wake(self) -> None:
        self._asleep.release()


class SyncDatabase:
    def __init__(self, s: Settings) -> None:
        self.dsn, self.min_size, self.max_size = s.database_url, s.db_pool_min, s.db_pool_max
        self.acquire_timeout, self.connect_timeout = s.db_acquire_timeout, s.db_connect_timeout
        self.statement_timeout_ms = int(s.db_statement_timeout * 1000)
        # Names this process's sessions in pg_stat_activity (and lets a test find them).
        self.application_name = f"lab-{s.api_variant}-{os.getpid()}"
        self._idle: list[Connection] = []
        self._size = self._in_use = 0
        self._queue: deque[_Waiter] = deque()  # waiting threads, oldest first
        self._lock = threading.Lock()
        self._columns: dict[str, tuple[str, ...]] = {}  # statement -> its result's column names

    def __enter__(self) -> SyncDatabase:
        # Best effort: a database that is down at start-up must not stop the API (it answers 503).
        for _ in range(self.min_size):
            try:
                conn = self._connect()
            except DatabaseUnavailable:
                break
            with self._lock:
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
        waiter = None
        with self._lock:
            if self._queue or not (self._idle or self._size < self.max_size):
                # FIFO: a release hands its connection (or its slot) to the oldest waiter
                # directly and wakes that one thread only, not every waiter to re-check.
                waiter = _Waiter()
                self._queue.append(waiter)
            else:
                self._in_use += 1
                if self._idle:
                    return self._idle.pop()
                self._size += 1  # reserve the slot now, connect outside the lock
        if waiter is not None:
            if not waiter.wait(self.acquire_timeout):
                with self._lock:
                    if not waiter.granted:  # still queued (not handed one meanwhile): give up
                        self._queue.remove(waiter)
                        raise PoolExhausted(
                            f"no database connection free after {self.acquire_timeout:g} s "
                            f"(DB_POOL_MAX={self.max_size})"
                        )
            if waiter.conn is not None:
                return waiter.conn
            # handed a slot whose connection broke: open a new one in it
        try:
            return self._connect()
        except BaseException:
            self._release(None)
            raise

    def _release(self, conn: Connection | None) -> None:
        """Hand the connection (or, when it is broken or None, its slot) to the oldest waiter;
        with none waiting, back to the idle list (or the slot is freed)."""
        usable = conn is not None and not conn.closed
        with self._lock:
            if self._queue:
                waiter = self._queue.popleft()
                waiter.conn, waiter.granted = (conn if usable else None), True
                waiter.wake()
                return
            self._in_use -= 1
            if usable:
                assert conn is not None
                self._idle.append(conn)
            else:
                self._size -= 1

    def _failed(self, conn: Connection, exc: psycopg2.Error) -> Exception:
        """What a query's psycopg2 error becomes; a broken connection is closed on the way."""
        mapped = _translate(exc)
        if mapped is None:
            return exc
        if not isinstance(mapped, DatabaseTimeout):
            conn.close()  # broken (server restarted, network gone): never hand it out again
        if isinstance(mapped, DatabaseUnavailable):
            self._drop_idle()  # they were opened to the same server: likely broken too
        return mapped

    def _drop_idle(self) -> None:
        with self._lock:
            for conn in self._idle:
                conn.close()
            self._size -= len(self._idle)
            self._idle.clear()

    def fetchrow(self, query: str, *args: object) -> Row | None:
        # psycopg2 notices that the server closed an idle pooled connection (a restart, an idle
        # timeout) only when it uses it; asyncpg's pool notices on its own. So a read that
        # fails that way is tried once more, on a new connection. Never a write: it may have
        # been committed before the connection broke.
        retries = 1 if _is_read(query) else 0
        while True:
            try:
                return self._fetchrow(query, args)
            except DatabaseUnavailable:
                if retries == 0:
                    raise
                retries -= 1

    def _fetchrow(self, query: str, args: tuple[object, ...]) -> Row | None:
        sql, order = _psycopg2_sql(query)
        if order is not None:
            args = tuple(args[i] for i in order)
        conn = self._acquire()
        try:
            with conn.cursor() as cur:
                cur.execute(sql, args)
                row = cur.fetchone()
                if row is None or cur.description is None:  # no row, or no rows to return
                    return None
                names = self._columns.get(query)
                if names is None:  # per statement, once: the names do not change
                    names = self._columns[query] = tuple(c.name for c in cur.description)
                return dict(zip(names, row, strict=True))
        except psycopg2.Error as exc:
            failure = self._failed(conn, exc)
            if failure is exc:
                raise
            raise failure from exc
        finally:
            self._release(conn)

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
