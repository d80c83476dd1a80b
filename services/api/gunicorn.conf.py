"""gunicorn settings, read from the same environment as the app (services/api/settings.py)."""

import os
import tempfile

# Each worker is a process with its own metrics; prometheus-client's multiprocess mode makes
# /metrics merge them. The variable must be set before anything imports prometheus_client
# (it picks its storage at import time, and workers inherit the master's modules).
if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="lab-metrics-")

from prometheus_client import multiprocess

from services.api.settings import settings

bind = f"{settings.api_host}:{settings.api_port}"
workers = settings.api_workers
worker_class = "services.api.server.LabWorker"
accesslog = "-" if settings.access_log else None
backlog = 4096
graceful_timeout = 10
# gunicorn 27's control socket defaults to one path per user: several lab servers would fight
# over it, and the lab has no use for it.
control_socket_disable = True
# A slow request may last MAX_DELAY_MS (+ upstream timeout); don't kill the worker mid-request.
timeout = int(settings.max_delay_ms / 1000 + settings.upstream_timeout + 30)


def child_exit(server: object, worker: object) -> None:
    # Drop a dead worker's live gauges, or "livesum" would count them forever.
    multiprocess.mark_process_dead(worker.pid)  # type: ignore[attr-defined]
