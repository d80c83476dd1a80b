"""The lab's database: an external DATABASE_URL, or an embedded PostgreSQL (pgserver).

pgserver ships PostgreSQL binaries and starts a server listening on a Unix socket only.
We let it initialise and start the server, but we stop the server ourselves: pgserver's own
stop path keeps a per-datadir list of "handle" pids and silently skips stopping while a dead
pid from a crashed run is still listed, and it treats an unreaped (zombie) postmaster as alive,
which makes `pg_ctl -w stop` wait for its full 60 s timeout.
"""

import atexit
import json
import os
import signal
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import psutil  # a dependency of pgserver, so always installed alongside it
import psycopg2

if TYPE_CHECKING:
    from pgserver.postgres_server import PostgresServer

SQL_DIR = Path(__file__).resolve().parents[1] / "db"

# Fast shutdown first (what `pg_ctl stop` sends), then immediate, then SIGKILL.
_STOP_SIGNALS: tuple[tuple[signal.Signals, float], ...] = (
    (signal.SIGINT, 10.0),
    (signal.SIGQUIT, 3.0),
    (signal.SIGKILL, 3.0),
)


def default_datadir() -> Path:
    """`${TMPDIR:-/tmp}/fastapi-lab/pgdata`: outside the repo, because as root pgserver
    chowns the datadir to its own user and opens up permissions of every parent folder."""
    return Path(tempfile.gettempdir()) / "fastapi-lab" / "pgdata"


def sql_files() -> list[Path]:
    """The schema/seed files, in the order docker-entrypoint-initdb.d would run them."""
    return sorted(SQL_DIR.glob("*.sql"))


def apply_schema(dsn: str) -> None:
    """Run every services/db/*.sql file in order (they are idempotent)."""
    conn = psycopg2.connect(dsn)
    try:
        # Autocommit: each file is sent as one simple-protocol query, like psql would.
        conn.autocommit = True
        with conn.cursor() as cur:
            for path in sql_files():
                cur.execute(path.read_text())
    finally:
        conn.close()


@contextmanager
def database(datadir: Path | None = None) -> Iterator[str]:
    """Yield a DSN with the schema applied.

    With DATABASE_URL set, that database is used as is (only the schema is applied);
    otherwise an embedded PostgreSQL runs in `datadir` for the duration of the block.
    """
    external = os.environ.get("DATABASE_URL")
    if external:
        apply_schema(external)
        yield external
        return
    with embedded_postgres(datadir or default_datadir()) as dsn:
        apply_schema(dsn)
        yield dsn


@contextmanager
def embedded_postgres(datadir: Path) -> Iterator[str]:
    """Start (or adopt) the pgserver PostgreSQL in `datadir`; stop it on exit, even on
    exceptions and KeyboardInterrupt, unless another live process still uses it."""
    datadir = datadir.expanduser().resolve()
    datadir.mkdir(parents=True, exist_ok=True)
    pgserver = _import_pgserver()
    server_cls: type[PostgresServer] = pgserver.PostgresServer
    if datadir in server_cls._instances:
        # pgserver would hand out the same instance, and the inner exit would stop the server
        # under the outer block; nesting is a bug in the caller, so say so.
        raise RuntimeError(f"embedded postgres for {datadir} is already open in this process")
    with server_cls._lock:
        _forget_dead_handles(datadir)
        _drop_stale_pidfile(datadir)
    try:
        # cleanup_mode=None: pgserver only bookkeeps handles; stopping is done below.
        server = pgserver.get_server(datadir, cleanup_mode=None)
    except BaseException:
        # A failed/interrupted start may leave a half-started postmaster and, inside pgserver,
        # a cached broken instance that get_server() would hand out again.
        server_cls._instances.pop(datadir, None)
        with server_cls._lock:
            if not _live_handles(datadir):
                _stop_postmaster(datadir)
        raise
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
        # Already cleaned up; no need to keep pgserver's atexit hook (one per start) around.
        atexit.unregister(server._cleanup)
        with server_cls._lock:
            if not _live_handles(datadir):
                _stop_postmaster(datadir)


def postmaster_pid(datadir: Path) -> int | None:
    """The pid recorded in postmaster.pid, if the file exists and is readable."""
    try:
        first_line = (datadir / "postmaster.pid").read_text().split("\n", 1)[0]
        return int(first_line)
    except (OSError, ValueError):
        return None


def postgres_running(pid: int) -> bool:
    """True when `pid` is a live (not zombie) postgres process."""
    try:
        proc = psutil.Process(pid)
        return proc.name() == "postgres" and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _import_pgserver() -> ModuleType:
    # pgserver computes a runtime dir at import; platformdirs warns when XDG_RUNTIME_DIR is
    # unset (containers, CI) and pytest's filterwarnings=error would turn that into a failure.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
        import pgserver
    return pgserver


def _handles_file(datadir: Path) -> Path:
    return datadir / ".handle_pids.json"


def _live_handles(datadir: Path) -> list[int]:
    path = _handles_file(datadir)
    try:
        pids: list[int] = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    return [pid for pid in pids if psutil.pid_exists(pid)]


def _forget_dead_handles(datadir: Path) -> None:
    """Drop pids of processes that died without cleaning up (kill -9, OOM) from pgserver's
    handle list; otherwise pgserver would count them as users forever."""
    path = _handles_file(datadir)
    if path.exists():
        path.write_text(json.dumps(_live_handles(datadir)))


def _drop_stale_pidfile(datadir: Path) -> None:
    """Remove the lock files of a postmaster that is dead but whose pid still exists: an
    unreaped zombie (some container inits reap lazily) or a pid reused by another program.
    pgserver would take it for a running server and hand out a dead socket, and postgres
    refuses to start while the socket lock names a pid that kill(pid, 0) still accepts.
    A pid that no longer exists at all is left to postgres, which handles that case itself."""
    pidfile = datadir / "postmaster.pid"
    pid = postmaster_pid(datadir)
    if pid is None or not psutil.pid_exists(pid) or postgres_running(pid):
        return
    lines = pidfile.read_text().splitlines()
    # Line 5 of postmaster.pid is the socket directory; its .s.PGSQL.<port>.lock names the pid.
    if len(lines) > 4 and lines[4].strip():
        for lock in Path(lines[4].strip()).glob(".s.PGSQL.*.lock"):
            lock.unlink(missing_ok=True)
    pidfile.unlink(missing_ok=True)


def _stop_postmaster(datadir: Path) -> None:
    """Stop the postmaster of `datadir` (and so all its backends) and wait until it is gone."""
    pid = postmaster_pid(datadir)
    if pid is None:
        return
    for sig, timeout in _STOP_SIGNALS:
        if not postgres_running(pid):
            return
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and postgres_running(pid):
            time.sleep(0.05)
    if postgres_running(pid):
        raise RuntimeError(f"postgres (pid {pid}, datadir {datadir}) did not stop")
