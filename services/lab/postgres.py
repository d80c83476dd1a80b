"""The lab's database: an external DATABASE_URL, or PostgreSQL run from pgserver's binaries.

The pgserver wheel ships PostgreSQL 16 (initdb, pg_ctl, postgres); we run those binaries
ourselves rather than through pgserver's Python API, whose stop path keeps a per-datadir list
of "handle" pids (silently skipping the stop while a dead pid from a crashed run is listed)
and treats an unreaped (zombie) postmaster as alive. The server listens on a Unix socket in
its data directory only (no TCP port to collide with): the DSN is
`postgresql://postgres:@/postgres?host=<datadir>`. initdb and postgres refuse to run as root:
then they run as the system user `pgserver` (created if missing, as pgserver itself does),
which owns the data directory.
"""

import fcntl
import importlib.util
import os
import pwd
import shlex
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import psycopg2

SQL_DIR = Path(__file__).resolve().parents[1] / "db"
# Account the server runs as when we are root (the name pgserver uses, so data directories
# it initialised before keep working).
SERVER_USER = "pgserver"
# With no TCP listener the port only names the socket file, <socket dir>/.s.PGSQL.5432.
SOCKET_PORT = 5432
# sockaddr_un.sun_path holds 108 bytes, the terminating NUL included.
_MAX_SOCKET_PATH = 107

# Fast shutdown first (what `pg_ctl stop` sends), then immediate, then SIGKILL.
_STOP_SIGNALS: tuple[tuple[signal.Signals, float], ...] = (
    (signal.SIGINT, 10.0),
    (signal.SIGQUIT, 3.0),
    (signal.SIGKILL, 3.0),
)
# Data directories open in this process: nesting two blocks on one would stop the server
# under the outer block, so it is refused.
_OPEN: set[Path] = set()


def default_datadir() -> Path:
    """`${TMPDIR:-/tmp}/fastapi-lab/pgdata`: outside the repo, because as root the server's
    account must be able to reach it (every parent folder gets o+x)."""
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
def database(datadir: Path | None = None, external_url: str | None = None) -> Iterator[str]:
    """Yield a DSN with the schema applied.

    With `external_url` (the entry points pass DATABASE_URL), that database is used as is
    (only the schema is applied); otherwise an embedded PostgreSQL runs in `datadir` for the
    duration of the block.
    """
    if external_url:
        apply_schema(external_url)
        yield external_url
        return
    with embedded_postgres(datadir or default_datadir()) as dsn:
        apply_schema(dsn)
        yield dsn


@contextmanager
def embedded_postgres(datadir: Path) -> Iterator[str]:
    """Start (or adopt) the PostgreSQL of `datadir`; stop it on exit, even on exceptions and
    KeyboardInterrupt, unless another live process still uses it."""
    server = EmbeddedPostgres(datadir)
    if server.datadir in _OPEN:
        raise RuntimeError(
            f"embedded postgres for {server.datadir} is already open in this process"
        )
    _OPEN.add(server.datadir)
    try:
        with server.users() as users:
            users.append(os.getpid())
            try:
                dsn = server.start()
            except BaseException:
                # A failed or interrupted start may leave a half-started postmaster behind.
                users.remove(os.getpid())
                if not users:
                    server.stop()
                raise
        try:
            yield dsn
        finally:
            with server.users() as users:
                if os.getpid() in users:
                    users.remove(os.getpid())
                if not users:
                    server.stop()
    finally:
        _OPEN.discard(server.datadir)


class EmbeddedPostgres:
    """PostgreSQL in one data directory: `start()` initialises the directory if needed and
    starts a server (or adopts the one already running there), `stop()` stops it and waits
    until it is gone, `restart()` does both; the data survives."""

    def __init__(self, datadir: Path) -> None:
        self.datadir = datadir.expanduser().resolve()
        self.log_path = self.datadir / "postgres.log"

    @property
    def dsn(self) -> str:
        """The Unix-socket DSN (the socket directory recorded by the running server, if any)."""
        socket_dir = _pidfile_line(self.datadir, 4) or str(self.datadir)
        return f"postgresql://postgres:@/postgres?host={socket_dir}"

    def running(self) -> bool:
        pid = postmaster_pid(self.datadir)
        return pid is not None and postgres_running(pid)

    def start(self) -> str:
        """Make sure a server runs on the data directory; return its DSN."""
        socket_path = self.datadir / f".s.PGSQL.{SOCKET_PORT}"
        if len(str(socket_path)) > _MAX_SOCKET_PATH:
            raise RuntimeError(f"data directory path too long for a Unix socket: {socket_path}")
        account = _server_account()
        self._prepare(account)
        if not (self.datadir / "PG_VERSION").exists():
            self._run(account, "initdb", "--auth=trust", "--encoding=UTF8", "-U", "postgres")
        _drop_stale_pidfile(self.datadir)
        if not self.running():
            # listen_addresses '' (no TCP), the socket in the data directory. pg_ctl runs the
            # -o string through a shell, hence the quoting; -w waits until it accepts
            # connections. Its own session: a Ctrl-C in the terminal must not reach the server
            # before the runner has stopped the APIs that use it.
            options = f"-h '' -k {shlex.quote(str(self.datadir))} -p {SOCKET_PORT}"
            self._run(
                account, "pg_ctl", "start", "-w", "-t", "60", "-l", str(self.log_path),
                "-o", options, new_session=True,
            )  # fmt: skip
        return self.dsn

    def stop(self) -> None:
        """Stop the server (and so all its backends) and wait until it is gone."""
        _stop_postmaster(self.datadir)

    def restart(self) -> str:
        """Stop, then start again on the same data: what a database restart looks like to
        the APIs (their pooled connections break, new ones succeed)."""
        self.stop()
        return self.start()

    @contextmanager
    def users(self) -> Iterator[list[int]]:
        """The live pids that share this data directory, locked across processes for the
        block (so two processes never start or stop it at once); edits are saved."""
        path = self.datadir.parent / f".{self.datadir.name}.users"
        self.datadir.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a+") as file:
            fcntl.flock(file, fcntl.LOCK_EX)  # released when the file is closed
            file.seek(0)
            # Entries are "pid:start time", so a pid reused by another program does not count:
            # a user killed with SIGKILL never removed itself, and is forgotten here.
            live = [int(e.split(":")[0]) for e in file.read().split() if _identity(e) == e]
            yield live
            file.seek(0)
            file.truncate()
            file.write(" ".join(filter(None, (_identity(str(pid)) for pid in live))))

    def _prepare(self, account: pwd.struct_passwd | None) -> None:
        self.datadir.mkdir(parents=True, exist_ok=True)
        if account is not None:
            # The server's account must reach its binaries and its data directory.
            _let_others_traverse(_bin_dir())
            _let_others_traverse(self.datadir.parent)
            os.chown(self.datadir, account.pw_uid, account.pw_gid)
        self.datadir.chmod(0o700)  # postgres refuses a data directory others can read

    def _run(
        self, account: pwd.struct_passwd | None, program: str, *args: str, new_session: bool = False
    ) -> None:
        # Output to a file, not a pipe: the postmaster pg_ctl starts inherits pg_ctl's
        # descriptors, and reading a pipe it holds open would never end.
        with tempfile.TemporaryFile("w+") as output:
            result = subprocess.run(
                [str(_bin_dir() / program), "-D", str(self.datadir), *args],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd=self.datadir,  # as the server's account, root's cwd may be unreadable
                user=account.pw_uid if account else None,
                group=account.pw_gid if account else None,
                extra_groups=[] if account else None,
                start_new_session=new_session,
                check=False,
            )
            if result.returncode != 0:
                output.seek(0)
                log = (
                    self.log_path.read_text(errors="replace")[-2000:]
                    if self.log_path.exists()
                    else ""
                )
                raise RuntimeError(
                    f"{program} failed with status {result.returncode} in {self.datadir}:\n"
                    f"{output.read()[-2000:]}{log}"
                )


def postmaster_pid(datadir: Path) -> int | None:
    """The pid recorded in postmaster.pid, if the file exists and is readable."""
    try:
        return int(_pidfile_line(datadir, 0) or "")
    except ValueError:
        return None


def postgres_running(pid: int) -> bool:
    """True when `pid` is a live (not zombie) postgres process."""
    try:
        proc = psutil.Process(pid)
        return proc.name() == "postgres" and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _pidfile_line(datadir: Path, index: int) -> str | None:
    """Line `index` of postmaster.pid (0: pid, 4: socket directory), None if absent/empty."""
    try:
        lines = (datadir / "postmaster.pid").read_text().splitlines()
    except OSError:
        return None
    return lines[index].strip() or None if len(lines) > index else None


def _identity(entry: str) -> str | None:
    """ "pid:start time" of the process whose pid begins `entry`, None if there is none."""
    try:
        pid = int(entry.split(":")[0])
        return f"{pid}:{psutil.Process(pid).create_time():.2f}"
    except (ValueError, psutil.Error):
        return None


def _bin_dir() -> Path:
    """The PostgreSQL binaries inside the installed pgserver wheel (found without importing
    pgserver, whose import has side effects: it computes a runtime dir and warns)."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("pgserver is not installed: `make venv`, or set DATABASE_URL")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _server_account() -> pwd.struct_passwd | None:
    """None when we may run the server ourselves; as root, the account it runs as."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        pass
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVER_USER],
        capture_output=True,
        check=False,  # a concurrent start may have created it: getpwnam below decides
    )
    return pwd.getpwnam(SERVER_USER)


def _let_others_traverse(path: Path) -> None:
    """Add o+x (search, not listing) to `path` and every parent that lacks it."""
    for folder in (path, *path.parents):
        mode = folder.stat().st_mode
        if not mode & stat.S_IXOTH:
            folder.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


def _drop_stale_pidfile(datadir: Path) -> None:
    """Remove the lock files of a postmaster that is dead but whose pid still exists: an
    unreaped zombie (some container inits reap lazily) or a pid reused by another program.
    postgres refuses to start while the socket lock names a pid that kill(pid, 0) still
    accepts. A pid that no longer exists at all is left to postgres, which handles it."""
    pid = postmaster_pid(datadir)
    if pid is None or not psutil.pid_exists(pid) or postgres_running(pid):
        return
    socket_dir = _pidfile_line(datadir, 4)
    if socket_dir:
        for lock in Path(socket_dir).glob(".s.PGSQL.*.lock"):
            lock.unlink(missing_ok=True)
    (datadir / "postmaster.pid").unlink(missing_ok=True)


def _stop_postmaster(datadir: Path) -> None:
    """Stop the postmaster of `datadir` (and so all its backends) and wait until it is gone.
    Signals rather than `pg_ctl stop`, which takes a zombie for a live server and waits out
    its whole timeout."""
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
