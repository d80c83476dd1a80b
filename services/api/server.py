"""`python -m services.api`: build the settings from the environment, then serve the app under
uvicorn (one process) or gunicorn with uvicorn workers (API_WORKERS processes)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, ClassVar

from uvicorn_worker import UvicornWorker

from .settings import Settings, load_settings

APP = "services.api.main:app"  # what gunicorn's workers import (and build from the environment)
GUNICORN_CONF = Path(__file__).with_name("gunicorn.conf.py")


def lab_worker(settings: Settings) -> type[UvicornWorker]:
    """gunicorn's worker class with the loop the settings name (uvicorn-worker's default is
    loop="auto"; uvloop's behaviour under a blocked loop is one of the findings worth showing)."""

    class LabWorker(UvicornWorker):
        CONFIG_KWARGS: ClassVar[dict[str, Any]] = {
            "loop": settings.api_loop,
            "http": "httptools",
            "limit_concurrency": settings.api_limit_concurrency,
        }

    return LabWorker


def graceful_timeout(settings: Settings) -> int:
    """Seconds a stopping server lets accepted requests finish: the slowest request the
    settings allow (the largest delay, then an upstream call that times out), plus a margin."""
    return int(settings.max_delay_ms / 1000 + settings.upstream_timeout + 5)


def main() -> None:
    settings = load_settings(os.environ)  # a bad value stops here, with one line
    if settings.api_server == "gunicorn":
        # exec: gunicorn becomes this process, so signals from `make lab` reach it directly.
        argv = ["gunicorn", "--config", str(GUNICORN_CONF), APP]
        os.execv(sys.executable, [sys.executable, "-m", *argv])
    import signal

    import uvicorn

    # uvicorn restores the handlers it found and re-raises a SIGTERM once it has shut down
    # gracefully; with the default handler the process would die of it (status -15). A clean,
    # complete shutdown exits 0, as orchestrators (and the sigterm drill) expect.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))

    from .app import create_app

    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        loop=settings.api_loop,
        http="httptools",
        access_log=settings.access_log,
        log_level="info",
        # Under load the backlog is where queued connections wait: make it deep enough for
        # a few thousand Locust users rather than letting the kernel drop SYNs.
        backlog=4096,
        # Admission control (API_LIMIT_CONCURRENCY): beyond it, an immediate 503.
        limit_concurrency=settings.api_limit_concurrency,
        # SIGTERM: stop accepting, let accepted requests finish, but not forever.
        timeout_graceful_shutdown=graceful_timeout(settings),
    )
