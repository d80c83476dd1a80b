"""Where a drill's faults land: the native lab it starts itself (embedded PostgreSQL, upstream
and one API at a time on free ports, all stopped after) or the compose stack (`make up`)."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self

import psycopg2

from services import registry
from services.lab.netcheck import free_port, wait_healthy
from services.lab.postgres import EmbeddedPostgres, apply_schema
from services.lab.processes import api_process, upstream_process
from services.lab.procs import ServerProcess, Supervisor

HOST = "127.0.0.1"


@dataclass
class Shutdown:
    """What SIGTERM did to an API process under load."""

    signalled: float  # epoch s
    refused_at: float | None  # first refused connection while the process still ran
    exited_at: float | None
    exit_code: int | None
    drain_s: float | None


class Lab(Protocol):
    mode: str

    def start_api(self, variant: str, env: Mapping[str, object]) -> str: ...
    def stop_api(self, variant: str) -> None: ...
    def api_alive(self, variant: str) -> bool: ...
    def sigterm_api(self, variant: str, grace_s: float) -> Shutdown: ...
    def db_stop(self) -> None: ...
    def db_start(self) -> None: ...
    def db_restart(self) -> None: ...
    def upstream_restart(self, env: Mapping[str, object] | None, down_s: float = 0) -> None: ...
    def orders(self, note_prefix: str) -> list[tuple[int, str]]: ...


def fetch_orders(dsn: str, note_prefix: str) -> list[tuple[int, str]]:
    """(id, note) of every order whose note is `<note_prefix>-<serial>`: one drill run's."""
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("select id, note from orders where note like %s", (note_prefix + "-%",))
            return [(int(i), str(n)) for i, n in cur.fetchall()]
    finally:
        conn.close()


def _refused(host: str, port: int) -> bool:
    """True when a TCP connect to host:port is refused right now."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False


def _watch_shutdown(
    signalled: float, host: str, port: int, alive: object, code: object, grace_s: float
) -> Shutdown:
    """Probe the port every 50 ms until the process is gone (or grace + 10 s passed)."""
    refused_at = exited_at = None
    deadline = time.monotonic() + grace_s + 10
    while time.monotonic() < deadline:
        running = alive()  # type: ignore[operator]
        if not running:
            exited_at = time.time()
            break
        if refused_at is None and _refused(host, port):
            refused_at = time.time()
        time.sleep(0.05)
    exit_code = code() if exited_at else None  # type: ignore[operator]
    drain = round(exited_at - signalled, 2) if exited_at else None
    return Shutdown(signalled, refused_at, exited_at, exit_code, drain)


@dataclass
class NativeLab:
    """Everything on free loopback ports (never the lab's fixed ones): `make lab` may run."""

    mode: str = "native"
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="drill-")))
    supervisor: Supervisor = field(default_factory=Supervisor)
    apis: dict[str, ServerProcess] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    api_env: dict[str, dict[str, object]] = field(default_factory=dict)
    log_dir: Path | None = None  # the servers' logs (default: inside workdir, removed after)

    def __enter__(self) -> Self:
        self.logs = self.log_dir or self.workdir / "logs"
        self.pg = EmbeddedPostgres(self.workdir / "pg")
        self.dsn = self.pg.start()
        apply_schema(self.dsn)
        self.upstream_port = free_port(HOST)
        self.upstream_url = f"http://{HOST}:{self.upstream_port}"
        self.upstream = self._upstream({})
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self.supervisor.stop_all()
        finally:
            self.pg.stop()
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _upstream(self, env: Mapping[str, object]) -> ServerProcess:
        proc = upstream_process(self.upstream_port, self.logs, **env)
        proc.unset_prefixes = ("MOCK_",)
        self.supervisor.start(proc)
        return proc

    def start_api(self, variant: str, env: Mapping[str, object]) -> str:
        port = self.ports.setdefault(variant, free_port(HOST))
        self.api_env[variant] = dict(env)
        proc = api_process(
            variant,
            port,
            self.logs,
            DATABASE_URL=self.dsn,
            UPSTREAM_URL=self.upstream_url,
            **env,
        )
        self.supervisor.start(proc, health_timeout=60)
        self.apis[variant] = proc
        return f"http://{HOST}:{port}"

    def stop_api(self, variant: str) -> None:
        proc = self.apis.pop(variant, None)
        if proc is not None:
            proc.stop()

    def api_alive(self, variant: str) -> bool:
        proc = self.apis.get(variant)
        return proc is not None and proc.is_running()

    def sigterm_api(self, variant: str, grace_s: float) -> Shutdown:
        proc = self.apis[variant]
        signalled = time.time()
        os.kill(proc.pid, signal.SIGTERM)  # the server process only, as an orchestrator would
        shutdown = _watch_shutdown(
            signalled, HOST, self.ports[variant], proc.is_running, proc.returncode, grace_s
        )
        proc.stop()  # reap it (and anything left of its group)
        self.start_api(variant, self.api_env[variant])
        return shutdown

    def db_stop(self) -> None:
        self.pg.stop()

    def db_start(self) -> None:
        self.pg.start()

    def db_restart(self) -> None:
        self.pg.restart()

    def upstream_restart(self, env: Mapping[str, object] | None, down_s: float = 0) -> None:
        """Stop the upstream; after `down_s`, start it with `env` (None: the defaults)."""
        self.upstream.stop()
        time.sleep(down_s)
        self.upstream = self._upstream(env or {})

    def orders(self, note_prefix: str) -> list[tuple[int, str]]:
        return fetch_orders(self.dsn, note_prefix)


@dataclass
class ComposeLab:
    """The stack `make up` started: faults through the compose command, APIs on their
    registry ports (published by compose.yaml). Extra API settings cannot be set here."""

    compose: str = field(default_factory=lambda: os.environ.get("COMPOSE", "podman-compose"))
    mode: str = "compose"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def _dc(self, *args: str, check: bool = True) -> str:
        cmd = [*shlex.split(self.compose), "-f", "compose.yaml", *args]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {done.stderr[-500:]}")
        return done.stdout

    def _url(self, variant: str) -> str:
        return f"http://{HOST}:{registry.get(variant).port}"

    def start_api(self, variant: str, env: Mapping[str, object]) -> str:
        if env:
            raise RuntimeError("--compose: API settings come from compose.yaml/.env, not a drill")
        self._dc("start", f"api-{variant}")
        wait_healthy(self._url(variant) + "/healthz", timeout=60)
        return self._url(variant)

    def stop_api(self, variant: str) -> None:
        return None  # the stack stays as `make up` left it

    def api_alive(self, variant: str) -> bool:
        try:
            with socket.create_connection((HOST, registry.get(variant).port), timeout=0.5):
                return True
        except OSError:
            return False

    @property
    def engine(self) -> str:
        """The container CLI under the compose command (`docker compose` -> docker)."""
        return "docker" if "docker" in self.compose else "podman"

    def _container(self, service: str) -> str:
        """The service's container id (podman-compose's `ps` takes no service argument)."""
        ids = subprocess.run(
            [self.engine, "ps", "-aq", "--filter", f"label=com.docker.compose.service={service}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        if len(ids) != 1:
            raise RuntimeError(f"expected one container for {service}, found {ids}")
        return ids[0]

    def _inspect(self, container: str, field: str) -> str:
        done = subprocess.run(
            [self.engine, "inspect", "-f", "{{.State." + field + "}}", container],
            capture_output=True,
            text=True,
            check=False,
        )
        return done.stdout.strip()

    def sigterm_api(self, variant: str, grace_s: float) -> Shutdown:
        service = f"api-{variant}"
        container = self._container(service)
        signalled = time.time()
        self._dc("kill", "-s", "TERM", service)

        def alive() -> bool:
            return self._inspect(container, "Running") == "true"

        def code() -> int | None:
            out = self._inspect(container, "ExitCode")
            return int(out) if out.isdigit() else None

        # The published port is podman's proxy, which accepts while the container drains:
        # refused_at is what a client outside sees.
        port = registry.get(variant).port
        shutdown = _watch_shutdown(signalled, HOST, port, alive, code, grace_s)
        self.start_api(variant, {})
        return shutdown

    def db_stop(self) -> None:
        self._dc("stop", "postgres")

    def db_start(self) -> None:
        self._dc("start", "postgres")

    def db_restart(self) -> None:
        self._dc("restart", "postgres")

    def upstream_restart(self, env: Mapping[str, object] | None, down_s: float = 0) -> None:
        if env:
            raise RuntimeError("--compose: the upstream's MOCK_* settings come from compose.yaml")
        self._dc("stop", "upstream")
        time.sleep(down_s)
        self._dc("start", "upstream")

    def orders(self, note_prefix: str) -> list[tuple[int, str]]:
        sql = f"select id, note from orders where note like '{note_prefix}-%'"
        out = self._dc(
            "exec",
            "-T",
            "postgres",
            "sh",
            "-c",
            f'psql -U "$POSTGRES_USER" -d "$POSTGRES_DB" -AtF, -c "{sql}"',
        )
        rows = []
        for line in out.splitlines():
            order_id, _, note = line.partition(",")
            if order_id.isdigit():
                rows.append((int(order_id), note))
        return rows
