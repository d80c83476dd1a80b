"""gunicorn's configuration, from the same environment and settings object as the app.

An entry point: gunicorn executes this file, so it builds the settings (services/api/settings.py).
"""

import os
import shutil
import tempfile

from gunicorn.workers.base import Worker

from services.api.server import graceful_timeout as grace_for
from services.api.server import lab_worker
from services.api.settings import load_settings

settings = load_settings(os.environ)

bind = f"{settings.api_host}:{settings.api_port}"
workers = settings.api_workers
worker_class = lab_worker(settings)
accesslog = "-" if settings.access_log else None
backlog = 4096
# uvicorn workers answer gunicorn's heartbeat from the event loop, so `timeout` only fires when
# a loop is blocked that long (the blocking variant under load!), not for a slow awaited call.
timeout = 120
graceful_timeout = grace_for(settings)
# gunicorn 27's control socket defaults to one path per user: several lab servers would fight
# over it, and the lab has no use for it.
control_socket_disable = True


def on_starting(server: object) -> None:
    # Each worker is a process with its own metrics; prometheus-client's multiprocess mode makes
    # /metrics merge them through files in this directory: a fresh one per server, set before
    # any worker imports prometheus_client (it chooses its storage at import time).
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="lab-metrics-")


def child_exit(server: object, worker: Worker) -> None:
    from prometheus_client import multiprocess

    # Drop a dead worker's live gauges, or "livesum" would count them forever.
    multiprocess.mark_process_dead(worker.pid)


def on_exit(server: object) -> None:
    shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
