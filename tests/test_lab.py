"""The native runner: schema/seed, embedded PostgreSQL lifecycle, process groups, ports."""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import psycopg2
import pytest

from services import registry
from services.lab.__main__ import main, parse_args
from services.lab.netcheck import (
    PortBusyError,
    ServerError,
    ensure_ports_free,
    free_port,
    port_is_free,
    wait_healthy,
)
from services.lab.ports import API_PORTS, HOST, LOCUST_PORT, UPSTREAM_PORT
from services.lab.postgres import (
    EmbeddedPostgres,
    apply_schema,
    database,
    embedded_postgres,
    postgres_running,
    postmaster_pid,
)
from services.lab.processes import api_process, planned_ports, url_table
from services.lab.procs import ServerProcess, Supervisor
from services.lab.sysinfo import cpu_model, cpu_pressure_s

REPO_ROOT = Path(__file__).resolve().parents[1]

# A tiny health endpoint that also forks a grandchild, like gunicorn forking workers.
FORKING_SERVER = """
import http.server, subprocess, sys
child = subprocess.Popen(["sleep", "300"])
print("grandchild", child.pid, flush=True)
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""


def query_one(dsn: str, sql: str) -> tuple[object, ...]:
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            row = cur.fetchone()
            assert row is not None
            return tuple(row)
    finally:
        conn.close()


def execute(dsn: str, sql: str) -> None:
    conn = psycopg2.connect(dsn)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def postmasters_for(datadir: Path) -> list[int]:
    """Live postmasters started on `datadir` (its backends die with it)."""
    found: list[int] = []
    for proc in psutil.process_iter(["name", "cmdline", "status"]):
        cmdline = proc.info["cmdline"] or []
        if (
            proc.info["name"] == "postgres"
            and proc.info["status"] != psutil.STATUS_ZOMBIE
            and str(datadir) in cmdline
        ):
            found.append(proc.pid)
    return found


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@pytest.fixture(scope="module")
def scratch_datadir(lab_tmp: Path) -> Iterator[Path]:
    """One datadir shared by the lifecycle tests (initdb once); each test leaves it stopped."""
    datadir = lab_tmp / "scratch-pgdata"
    yield datadir
    assert postmasters_for(datadir) == []


# --- ports ------------------------------------------------------------------------------


def test_fixed_ports_are_distinct() -> None:
    assert API_PORTS == {name: v.port for name, v in registry.VARIANTS.items()}
    ports = [*API_PORTS.values(), UPSTREAM_PORT, LOCUST_PORT]
    assert len(set(ports)) == len(ports)


def test_every_registry_variant_is_planned_by_default() -> None:
    args = parse_args([])
    assert tuple(args.variants) == registry.NAMES and args.locust
    ports = planned_ports(args.variants)
    assert ports == {
        "upstream": UPSTREAM_PORT,
        **{f"api-{name}": v.port for name, v in registry.VARIANTS.items()},
        "locust": LOCUST_PORT,
    }
    # Given in any order, variants come back in the registry's order.
    assert parse_args(["--variants", ",".join(reversed(registry.NAMES))]).variants == list(
        registry.NAMES
    )


@pytest.mark.parametrize("variant", registry.NAMES)
def test_api_process_uses_the_registry_port(variant: str) -> None:
    proc = api_process(variant)
    port = registry.VARIANTS[variant].port
    assert proc.env["API_VARIANT"] == variant and proc.env["API_PORT"] == str(port)
    assert proc.health_url == f"http://{HOST}:{port}/healthz"


def test_busy_port_is_named() -> None:
    with socket.socket() as listener:
        listener.bind((HOST, 0))
        listener.listen()
        busy = listener.getsockname()[1]
        assert not port_is_free(busy)
        with pytest.raises(PortBusyError, match=rf"{busy} \(api-async\)"):
            ensure_ports_free({"api-sync": free_port(), "api-async": busy})
    ensure_ports_free({"api-async": busy})  # free again once the listener is closed


def test_lab_refuses_to_start_on_busy_port(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as listener:
        # SO_REUSEADDR like the check itself, so a TIME_WAIT leftover cannot make this bind
        # fail while the check (then finding the port free) would start the whole lab.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((HOST, UPSTREAM_PORT))
            listener.listen()
        except OSError:
            pass  # something else already holds it: just as busy
        assert main(["--variants", "sync"]) == 2
    assert f"{UPSTREAM_PORT} (upstream)" in capsys.readouterr().err


def test_unknown_variant_is_rejected() -> None:
    with pytest.raises(SystemExit) as excinfo:
        main(["--variants", "sync,nope"])
    assert excinfo.value.code == 2


def test_url_table_lists_every_url() -> None:
    shown, hidden = ["sync", "offload"], [v for v in registry.NAMES if v not in ("sync", "offload")]
    table = url_table(shown, "postgresql://postgres:@/postgres?host=/x")
    for variant in shown:
        for path in ("docs", "runtime", "metrics"):
            assert f"http://127.0.0.1:{registry.VARIANTS[variant].port}/{path}" in table
    for variant in hidden:
        assert str(registry.VARIANTS[variant].port) not in table
    assert "postgresql://postgres:@/postgres?host=/x" in table
    assert f"{LOCUST_PORT} reserved" in table


# --- schema and seed ----------------------------------------------------------------------


def test_schema_applies_twice_and_seeds_exactly_100k_items(database_url: str) -> None:
    apply_schema(database_url)  # the fixture applied it once already
    counts = query_one(database_url, "select count(*), min(id), max(id) from items")
    assert counts == (100_000, 1, 100_000)
    # Deterministic prices: the same expression as 02-seed.sql.
    price = query_one(database_url, "select price_cents from items where id = 7")[0]
    assert price == 100 + (7 * 2654435761) % 99900
    assert query_one(database_url, "select count(*) from items where price_cents < 0") == (0,)
    assert query_one(database_url, "select to_regclass('orders') is not null") == (True,)


def test_constraints_reject_bad_rows(database_url: str) -> None:
    conn = psycopg2.connect(database_url)
    try:
        with conn.cursor() as cur:
            with pytest.raises(psycopg2.errors.CheckViolation):
                cur.execute("insert into orders (item_id, quantity) values (1, 0)")
            conn.rollback()
            with pytest.raises(psycopg2.errors.ForeignKeyViolation):
                cur.execute("insert into orders (item_id, quantity) values (100001, 1)")
            conn.rollback()
    finally:
        conn.close()


# --- embedded PostgreSQL lifecycle --------------------------------------------------------


def test_embedded_postgres_stops_on_exit(scratch_datadir: Path) -> None:
    with embedded_postgres(scratch_datadir) as dsn:
        pid = postmaster_pid(scratch_datadir)
        assert pid is not None and postgres_running(pid)
        assert query_one(dsn, "select 1") == (1,)
    assert not postgres_running(pid)
    assert postmasters_for(scratch_datadir) == []


def test_embedded_postgres_stops_on_keyboard_interrupt(scratch_datadir: Path) -> None:
    with pytest.raises(KeyboardInterrupt), embedded_postgres(scratch_datadir):
        pid = postmaster_pid(scratch_datadir)
        raise KeyboardInterrupt
    assert pid is not None and not postgres_running(pid)


def test_restart_after_owner_was_killed(scratch_datadir: Path) -> None:
    # A runner killed with SIGKILL cannot stop postgres (it runs detached, as pg_ctl starts
    # it): the next start must adopt that server and really stop it at the end.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path\n"
            "from services.lab.postgres import embedded_postgres\n"
            "with embedded_postgres(Path(sys.argv[1])) as dsn:\n"
            "    print(dsn, flush=True); time.sleep(300)\n",
            str(scratch_datadir),
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert "host=" in holder.stdout.readline()
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
    orphan = postmaster_pid(scratch_datadir)
    assert orphan is not None and postgres_running(orphan)

    with embedded_postgres(scratch_datadir) as dsn:
        assert query_one(dsn, "select 1") == (1,)
    assert postmasters_for(scratch_datadir) == []


def test_restart_after_postmaster_was_killed(scratch_datadir: Path) -> None:
    with embedded_postgres(scratch_datadir):
        pid = postmaster_pid(scratch_datadir)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        assert wait_until(lambda: not postgres_running(pid))
    # postmaster.pid (and the socket lock) are stale now; starting again must still work.
    assert (scratch_datadir / "postmaster.pid").exists()
    with embedded_postgres(scratch_datadir) as dsn:
        assert query_one(dsn, "select 1") == (1,)
    assert postmasters_for(scratch_datadir) == []


def test_restart_keeps_the_data_and_serves_again(scratch_datadir: Path) -> None:
    # The "db-restart" drill: stop and start the same data directory under a running block.
    with embedded_postgres(scratch_datadir) as dsn:
        execute(
            dsn,
            "drop table if exists drill; create table drill (n int); insert into drill values (1)",
        )
        server = EmbeddedPostgres(scratch_datadir)
        before = postmaster_pid(scratch_datadir)
        server.stop()
        assert not server.running() and before is not None and not postgres_running(before)
        assert server.restart() == dsn
        assert server.running() and postmaster_pid(scratch_datadir) != before
        assert query_one(dsn, "select count(*) from drill") == (1,)
        execute(dsn, "drop table drill")
    assert postmasters_for(scratch_datadir) == []


def test_dsn_is_a_unix_socket_in_the_datadir(scratch_datadir: Path) -> None:
    with embedded_postgres(scratch_datadir) as dsn:
        assert dsn == f"postgresql://postgres:@/postgres?host={scratch_datadir.resolve()}"
        assert (scratch_datadir / ".s.PGSQL.5432").is_socket()


def test_server_stays_up_while_another_process_uses_it(scratch_datadir: Path) -> None:
    # Only the last user of a data directory stops its server.
    code = (
        "import sys, time; from pathlib import Path\n"
        "from services.lab.postgres import embedded_postgres\n"
        "with embedded_postgres(Path(sys.argv[1])) as dsn:\n"
        "    print(dsn, flush=True); sys.stdin.readline()\n"
    )
    other = subprocess.Popen(
        [sys.executable, "-c", code, str(scratch_datadir)],
        cwd=REPO_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert other.stdin is not None and other.stdout is not None
    try:
        dsn = other.stdout.readline().strip()
        with embedded_postgres(scratch_datadir) as mine:
            assert mine == dsn
        assert query_one(dsn, "select 1") == (1,)  # still up: the other process holds it
        other.stdin.write("\n")
        other.stdin.flush()
        assert other.wait(timeout=30) == 0
        assert postmasters_for(scratch_datadir) == []  # the last one out stopped it
    finally:
        other.kill()
        other.wait()
        other.stdin.close()
        other.stdout.close()


# --- server processes ---------------------------------------------------------------------


def forking_server(tmp_path: Path, name: str = "forker") -> ServerProcess:
    port = free_port()
    return ServerProcess(
        name=name,
        cmd=[sys.executable, "-c", FORKING_SERVER, str(port)],
        health_url=f"http://{HOST}:{port}/healthz",
        log_path=tmp_path / f"{name}.log",
    )


def grandchild_pid(proc: ServerProcess) -> int:
    assert proc.log_path is not None
    assert wait_until(lambda: "grandchild" in proc.log_tail())
    return int(proc.log_tail().split("grandchild")[1].split()[0])


def test_stop_kills_the_whole_process_group(tmp_path: Path) -> None:
    proc = forking_server(tmp_path)
    proc.start()
    try:
        proc.wait_healthy(timeout=20)
        sleeper = grandchild_pid(proc)
        assert alive(sleeper)
        started = time.monotonic()
        proc.stop()
        assert time.monotonic() - started < 3  # SIGTERM sufficed, no 5 s wait for SIGKILL
    finally:
        proc.stop()  # idempotent
    assert proc.stopped and not proc.is_running()
    assert not alive(proc.pid) and not alive(sleeper)


def test_stop_escalates_to_sigkill(tmp_path: Path) -> None:
    proc = ServerProcess(
        name="stubborn",
        cmd=[
            sys.executable,
            "-c",
            "import signal, time\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "print('ready', flush=True)\n"
            "time.sleep(300)\n",
        ],
        log_path=tmp_path / "stubborn.log",
    )
    proc.start()
    assert wait_until(lambda: "ready" in proc.log_tail())
    proc.stop(timeout=0.5)
    assert proc.returncode() == -signal.SIGKILL
    assert not alive(proc.pid)


def test_wait_healthy_fails_fast_with_log_tail(tmp_path: Path) -> None:
    proc = ServerProcess(
        name="crasher",
        cmd=[sys.executable, "-c", "print('invalid setting API_PORT'); raise SystemExit(3)"],
        health_url=f"http://{HOST}:{free_port()}/healthz",
        log_path=tmp_path / "crasher.log",
    )
    started = time.monotonic()
    with Supervisor() as supervisor, pytest.raises(ServerError) as excinfo:
        supervisor.start(proc, health_timeout=60)
    assert time.monotonic() - started < 10
    assert "status 3" in str(excinfo.value)
    assert "invalid setting API_PORT" in str(excinfo.value)


def test_wait_healthy_without_a_process_times_out() -> None:
    url = f"http://{HOST}:{free_port()}/healthz"
    started = time.monotonic()
    with pytest.raises(ServerError, match="not healthy after 1s"):
        wait_healthy(url, timeout=1.0)
    assert time.monotonic() - started < 5


def test_unset_prefixes_hide_inherited_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOCK_LATENCY_MS", "999")
    monkeypatch.setenv("LAB_KEPT", "yes")
    code = "import os; print(os.environ.get('MOCK_LATENCY_MS'), os.environ.get('LAB_KEPT'))"
    proc = ServerProcess(
        "env",
        [sys.executable, "-c", code],
        log_path=tmp_path / "env.log",
        unset_prefixes=("MOCK_",),
    )
    proc.start()
    assert wait_until(lambda: not proc.is_running())
    proc.stop()
    assert proc.log_tail() == "None yes"


def test_sysinfo_reads_the_machine() -> None:
    assert cpu_model().strip()
    pressure = cpu_pressure_s()
    assert pressure != pressure or pressure >= 0  # NaN where the kernel has no PSI


def test_supervisor_stops_everything_when_a_start_fails(tmp_path: Path) -> None:
    good = forking_server(tmp_path, "good")
    bad = ServerProcess(
        name="bad",
        cmd=[sys.executable, "-c", "raise SystemExit(1)"],
        health_url=f"http://{HOST}:{free_port()}/healthz",
        log_path=tmp_path / "bad.log",
    )
    with pytest.raises(ServerError, match="bad exited"), Supervisor() as supervisor:
        supervisor.start(good, bad, health_timeout=20)
    assert good.stopped and bad.stopped
    assert not alive(good.pid)


def test_server_dies_with_a_killed_runner(tmp_path: Path) -> None:
    # A runner killed with SIGKILL cannot stop its servers; the kernel SIGTERMs them instead
    # (PR_SET_PDEATHSIG), so no server outlives it holding the lab's ports.
    runner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path\n"
            "from services.lab.procs import ServerProcess\n"
            "proc = ServerProcess('child', [sys.executable, '-c', 'import time; time.sleep(300)'],"
            " log_path=Path(sys.argv[1]))\n"
            "proc.start(); print(proc.pid, flush=True); time.sleep(300)\n",
            str(tmp_path / "child.log"),
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert runner.stdout is not None
        child = int(runner.stdout.readline())
        assert alive(child)
    finally:
        runner.kill()
        runner.wait()
        if runner.stdout is not None:
            runner.stdout.close()
    assert wait_until(lambda: not alive(child), timeout=5)


def test_nested_use_of_one_datadir_is_refused(scratch_datadir: Path) -> None:
    with embedded_postgres(scratch_datadir) as dsn:
        with pytest.raises(RuntimeError, match="already open"), embedded_postgres(scratch_datadir):
            pass
        assert query_one(dsn, "select 1") == (1,)


def test_an_external_database_is_used_as_is(database_url: str) -> None:
    # DATABASE_URL (passed in by the entry points): no embedded server, only the schema.
    with database(external_url=database_url) as dsn:
        assert dsn == database_url
        assert query_one(dsn, "select count(*) from items") == (100_000,)
