"""Run the server watch inside Locust: on the single process or the master, never on workers,
from test_start to test_stop; its tab in the web UI; its CSVs beside a headless run's --csv."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from loadtest.generator import server_tab
from loadtest.generator.server_watch import Watch

logger = logging.getLogger(__name__)


class ServerWatchHooks:
    """Listeners for Locust's events; holds the watch of the current (or last) test."""

    def __init__(self, targets: Mapping[str, str]) -> None:
        self.targets = targets
        self.watch: Watch | None = None
        self._written = True

    def on_init(self, environment: Environment, **kwargs: object) -> None:
        if environment.web_ui is not None:  # the master or single process with a web UI
            server_tab.install(environment.web_ui, lambda: self.watch)

    def on_test_start(self, environment: Environment, **kwargs: object) -> None:
        options = environment.parsed_options
        if options is None or isinstance(environment.runner, WorkerRunner):
            return
        loaded = getattr(options, "lab_target", None)  # users.py decides it first
        if not loaded:
            return
        if self.watch is not None:
            self.watch.stop()
        # Headless runs (compare, capacity) load one target at a time: only it is polled.
        self.watch = Watch(
            self.targets,
            loaded,
            poll_all=not options.headless,
            generator_cpu=lambda: generator_cpu(environment),
            rps=lambda: environment.stats.total.current_rps,
        )
        self.watch.start()
        self._written = False

    def on_test_stop(self, environment: Environment, **kwargs: object) -> None:
        if self.watch is None or isinstance(environment.runner, WorkerRunner):
            return
        self.watch.stop()
        self._write(environment)

    def on_quitting(self, environment: Environment, **kwargs: object) -> None:
        if self.watch is not None and not isinstance(environment.runner, WorkerRunner):
            self.watch.stop()
            self._write(environment)

    def _write(self, environment: Environment) -> None:
        prefix = getattr(environment.parsed_options, "csv_prefix", None)
        if self.watch is None or self._written or not prefix:
            return
        server, bystander = self.watch.write_csv(prefix)
        self._written = True
        logger.info("server watch: wrote %s and %s", server, bystander)


def generator_cpu(environment: Environment) -> float | None:
    """Locust's own CPU %, the busiest of the master and its workers: the verdict says the
    numbers describe Locust when any process of it is CPU-bound."""
    runner = environment.runner
    if runner is None:
        return None
    usages = [float(runner.current_cpu_usage)]
    if isinstance(runner, MasterRunner):
        usages += [float(worker.cpu_usage) for worker in runner.clients.values()]
    return max(usages)
