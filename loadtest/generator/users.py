"""Locust users for the lab: one user class per scenario, made from the scenario table.

Locust loads it through loadtest/locustfile.py (the path every launcher names):

    locust --config loadtest/locust.conf                      # web UI on http://127.0.0.1:8089
    locust --config loadtest/locust.conf --headless -t 30s --variant sync UpstreamUser

Custom arguments (also editable in the web UI): --variant picks the API (any variant of
services/registry.py) whose URL comes from generator/targets.py (LAB_TARGETS, else the native
lab ports); a Host field / --host that is given wins over it. --delay-ms and --work fill the
scenario paths.

Every user sends its next request as soon as the previous answer arrives (wait_time 0): a
closed loop, so N users keep exactly N requests in flight and throughput = N / latency
(Little's law). That is the load the lab compares the variants under; add think time with
`wait_time` in a subclass when you want an open-ish model instead.
"""

from __future__ import annotations

import logging
import threading
from argparse import Namespace
from typing import Any

from locust import FastHttpUser, constant, events, tag
from locust.argument_parser import LocustArgumentParser
from locust.env import Environment
from locust.runners import WorkerRunner

from loadtest.generator.hooks import listen
from loadtest.generator.scenarios import SCENARIOS, Scenario
from loadtest.generator.server_locust import ServerWatchHooks
from loadtest.generator.targets import NAMES, load_targets

DEFAULT_VARIANT = "async"
TARGETS = load_targets()  # read once: a malformed LAB_TARGETS stops Locust at start-up

logger = logging.getLogger(__name__)


def _arguments(parser: LocustArgumentParser) -> None:
    parser.add_argument(
        "--variant",
        choices=list(NAMES),
        default=DEFAULT_VARIANT,
        help="API variant to load (used when Host is empty)",
    )
    parser.add_argument("--delay-ms", type=int, default=200, help="delay of each slow call (ms)")
    parser.add_argument("--work", type=int, default=20, help="CPU work units (1 unit ~ 1 ms)")
    parser.add_argument(
        "--warmup-s",
        type=float,
        default=0.0,
        include_in_web_ui=False,
        help="drop the statistics of the first N seconds (the warm-up; used by compare)",
    )


def target(environment: Environment) -> str:
    """The Host field / --host when given, else the URL of the chosen --variant."""
    options = environment.parsed_options
    return environment.host or TARGETS[getattr(options, "variant", None) or DEFAULT_VARIANT]


def _decide_target(environment: Environment, **kwargs: object) -> None:
    """Decided afresh at every start where the run is started (the single process, or the
    master), never on workers: the master sends its parsed options, this one included, with
    every spawn message, so workers need no LAB_TARGETS of their own."""
    if environment.parsed_options is None or isinstance(environment.runner, WorkerRunner):
        return
    environment.parsed_options.lab_target = target(environment)
    logger.info("target: %s", environment.parsed_options.lab_target)


def _schedule_warmup_reset(environment: Environment, **kwargs: object) -> None:
    """One continuous load: the warm-up is its first --warmup-s seconds, not a separate run
    whose queued leftovers would land in the measured one; only its statistics are dropped."""
    warmup = getattr(environment.parsed_options, "warmup_s", 0.0)
    if warmup > 0 and not isinstance(environment.runner, WorkerRunner):
        # Locust has monkey-patched threading with gevent: this timer is a greenlet.
        timer = threading.Timer(warmup, environment.stats.reset_all)
        timer.daemon = True  # a run shorter than its warm-up must not wait for it
        timer.start()


listen(events.init_command_line_parser, _arguments)
listen(events.test_start, _decide_target)
listen(events.test_start, _schedule_warmup_reset)
# The server's side while the load runs (/runtime polls, a bystander probe, the web UI's Server
# tab, CSVs beside --csv): registered after _decide_target, whose lab_target it watches.
SERVER_WATCH = ServerWatchHooks(TARGETS)
listen(events.init, SERVER_WATCH.on_init)
listen(events.test_start, SERVER_WATCH.on_test_start)
listen(events.test_stop, SERVER_WATCH.on_test_stop)
listen(events.quitting, SERVER_WATCH.on_quitting)


class LabUser(FastHttpUser):
    abstract = True
    wait_time = constant(0)  # closed loop, see the module docstring

    def __init__(self, environment: Environment) -> None:
        # Set per user, from the target decided when this run started, so switching the variant
        # between two runs in the web UI switches the URL. Never written to environment.host
        # or the class: Locust would keep it, and the web UI would prefill the Host field.
        options = environment.parsed_options
        self.host = getattr(options, "lab_target", None) or target(environment)
        super().__init__(environment)

    @property
    def options(self) -> Namespace:
        """The custom arguments above, as set for this run (command line or web UI)."""
        options: Namespace = self.environment.parsed_options
        return options

    def send(self, scenario: Scenario) -> None:
        """One request of `scenario`, as its table entry declares it."""
        path = scenario.url(vars(self.options))
        kwargs: dict[str, Any] = {"name": scenario.request_name}
        if scenario.body is not None:
            kwargs["json"] = scenario.body()
        if scenario.expect_status is None:
            self.client.request(scenario.method, path, **kwargs)
            return
        with self.client.request(scenario.method, path, catch_response=True, **kwargs) as response:
            if response.status_code != scenario.expect_status:
                response.failure(f"expected {scenario.expect_status}, got {response.status_code}")


def user_class(scenario: Scenario) -> type[LabUser]:
    """The Locust user of `scenario`: one task sending its request, tagged with its name."""

    def request(user: LabUser) -> None:
        user.send(scenario)

    request.__name__ = request.__qualname__ = scenario.name.replace("-", "_")
    attributes = {
        "tasks": [tag(scenario.name)(request)],
        "__module__": __name__,
        "__doc__": f"{scenario.method} {scenario.path} (scenario {scenario.name!r})",
    }
    return type(scenario.user_class, (LabUser,), attributes)


# Locust finds user classes among a locustfile's module-level names: loadtest/locustfile.py
# adds these to its own (ItemsUser, DbUser, ... as the scenario table names them).
USER_CLASSES: dict[str, type[LabUser]] = {s.user_class: user_class(s) for s in SCENARIOS.values()}
