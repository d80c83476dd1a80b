"""Shared fixtures: one PostgreSQL for the whole session, the mock upstream, API servers.

Everything binds 127.0.0.1 on free ports, so tests never collide with a running `make lab`.
"""

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Protocol

import pytest
from fastapi.testclient import TestClient

from services import registry
from services.lab.netcheck import free_port
from services.lab.postgres import database
from services.lab.processes import api_process, upstream_process
from services.lab.procs import ServerProcess, Supervisor

HOST = "127.0.0.1"


class StartApi(Protocol):
    def __call__(self, variant: str, /, **env: object) -> str: ...


@pytest.fixture(scope="session")
def lab_tmp() -> Iterator[Path]:
    """Scratch dir for the session's datadir and server logs. Not pytest's tmp_path: run as
    root, the embedded PostgreSQL's account needs o+x on every parent folder of its datadir,
    and pytest re-tightens /tmp/pytest-of-root on the next run."""
    path = Path(tempfile.mkdtemp(prefix="fastapi-lab-tests-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def database_url(lab_tmp: Path) -> Iterator[str]:
    """DATABASE_URL if set, else one embedded PostgreSQL (schema + seed) for the session."""
    with database(lab_tmp / "pgdata", external_url=os.environ.get("DATABASE_URL")) as dsn:
        yield dsn


def _upstream_process(lab_tmp: Path, **env: object) -> tuple[ServerProcess, str]:
    port = free_port(HOST)
    return upstream_process(port, lab_tmp / "logs", **env), f"http://{HOST}:{port}"


def _api_process(lab_tmp: Path, variant: str, env: dict[str, object]) -> tuple[ServerProcess, str]:
    port = free_port(HOST)
    return api_process(variant, port, lab_tmp / "logs", **env), f"http://{HOST}:{port}"


@pytest.fixture(scope="session")
def upstream_url(lab_tmp: Path) -> Iterator[str]:
    """The mock upstream (`python -m services.upstream`) with its default settings."""
    proc, url = _upstream_process(lab_tmp)
    with Supervisor() as supervisor:
        supervisor.start(proc, health_timeout=30.0)
        yield url


@pytest.fixture
def start_upstream(lab_tmp: Path) -> Iterator[Callable[..., str]]:
    """Factory: an upstream of the test's own, e.g. `start_upstream(MOCK_ERROR_RATE=1.0)`."""
    with Supervisor() as supervisor:

        def start(**env: object) -> str:
            proc, url = _upstream_process(lab_tmp, **env)
            supervisor.start(proc, health_timeout=30.0)
            return url

        yield start


@pytest.fixture(scope="session")
def lab_apis(database_url: str, upstream_url: str, lab_tmp: Path) -> Iterator[dict[str, str]]:
    """Every registry variant with default settings, started once for the session."""
    env: dict[str, object] = {"DATABASE_URL": database_url, "UPSTREAM_URL": upstream_url}
    started = {v: _api_process(lab_tmp, v, env) for v in registry.NAMES}
    with Supervisor() as supervisor:
        supervisor.start(*(proc for proc, _ in started.values()), health_timeout=60.0)
        yield {variant: url for variant, (_, url) in started.items()}


@pytest.fixture
def start_api(database_url: str, upstream_url: str, lab_tmp: Path) -> Iterator[StartApi]:
    """Factory: `base_url = start_api("async", THREADPOOL_TOKENS=10)` starts
    `python -m services.api` on a free port and waits for /healthz; every API started
    during the test is stopped (whole process group) at teardown."""
    with Supervisor() as supervisor:

        def start(variant: str, /, **env: object) -> str:
            base = {"DATABASE_URL": database_url, "UPSTREAM_URL": upstream_url}
            proc, url = _api_process(lab_tmp, variant, {**base, **env})
            # Generous: gunicorn variants fork workers, and CI machines have 2 cores.
            supervisor.start(proc, health_timeout=60.0)
            return url

        yield start


@pytest.fixture
def app_client(database_url: str, upstream_url: str) -> Iterator[Callable[..., TestClient]]:
    """Factory: `client = app_client("sync", DB_STATEMENT_TIMEOUT=0.5)` builds the variant's app
    in this process with its own settings (the session's database and upstream unless given),
    runs its lifespan, and answers through FastAPI's TestClient: no server to start. For tests
    about behaviour, not concurrency (those use `start_api`)."""
    from services.api.app import create_app
    from services.api.settings import Settings

    with ExitStack() as stack:

        def make(variant: str, /, **overrides: object) -> TestClient:
            values = {"database_url": database_url, "upstream_url": upstream_url}
            values.update({name.lower(): value for name, value in overrides.items()})
            app = create_app(Settings.model_validate({"api_variant": variant, **values}))
            client = TestClient(app, raise_server_exceptions=False)
            return stack.enter_context(client)

        yield make
