"""Start the API under the server the settings name: uvicorn (one process) or gunicorn with
uvicorn workers (API_WORKERS processes). `python -m services.api` calls main()."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import ClassVar

from uvicorn_worker import UvicornWorker

from .settings import settings

APP = "services.api.main:app"
GUNICORN_CONF = Path(__file__).with_name("gunicorn.conf.py")


class LabWorker(UvicornWorker):
    # uvicorn-worker's default is loop="auto"; the lab makes the loop a setting (uvloop's
    # behaviour under a blocked loop is one of the findings worth showing).
    CONFIG_KWARGS: ClassVar[dict[str, str]] = {"loop": settings.api_loop, "http": "httptools"}


def main() -> None:
    if settings.api_server == "gunicorn":
        # exec: gunicorn becomes this process, so signals from `make lab` reach it directly.
        argv = ["gunicorn", "--config", str(GUNICORN_CONF), APP]
        os.execv(sys.executable, [sys.executable, "-m", *argv])
    import uvicorn

    uvicorn.run(
        APP,
        host=settings.api_host,
        port=settings.api_port,
        loop=settings.api_loop,
        http="httptools",
        access_log=settings.access_log,
        log_level="info",
        # Under load the backlog is where queued connections wait: make it deep enough for
        # a few thousand Locust users rather than letting the kernel drop SYNs.
        backlog=4096,
    )
