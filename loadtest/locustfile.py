"""Locust users for the lab: one user class per scenario in loadtest/scenarios.py.

    locust --config loadtest/locust.conf                      # web UI on http://127.0.0.1:8089
    locust --config loadtest/locust.conf --headless -t 30s --variant sync UpstreamUser

Custom arguments (also editable in the web UI): --variant picks the API (sync, async, offload,
blocking) whose URL comes from loadtest/targets.py (LAB_TARGETS, else the native lab ports);
a Host field / --host that is given wins over it. --delay-ms and --work fill the scenario paths.

Every user sends its next request as soon as the previous answer arrives (wait_time 0): a
closed loop, so N users keep exactly N requests in flight and throughput = N / latency
(Little's law). That is the load the lab compares the variants under; add think time with
`wait_time` in a subclass when you want an open-ish model instead.
"""

from __future__ import annotations

import logging
import random
from argparse import Namespace

import gevent
from locust import FastHttpUser, constant, events, tag, task
from locust.argument_parser import LocustArgumentParser
from locust.env import Environment
from locust.runners import WorkerRunner

from loadtest.scenarios import SCENARIOS
from loadtest.targets import VARIANTS, load_targets

DEFAULT_VARIANT = "async"
ITEM_IDS = 100_000  # the seeded items are 1..100000
TARGETS = load_targets()  # read once: a malformed LAB_TARGETS stops Locust at start-up

logger = logging.getLogger(__name__)


@events.init_command_line_parser.add_listener
def _arguments(parser: LocustArgumentParser) -> None:
    parser.add_argument(
        "--variant",
        choices=list(VARIANTS),
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


@events.test_start.add_listener
def _decide_target(environment: Environment, **kwargs: object) -> None:
    """Decided afresh at every start where the run is started (the single process, or the
    master), never on workers: the master sends its parsed options, this one included, with
    every spawn message, so workers need no LAB_TARGETS of their own."""
    if environment.parsed_options is None or isinstance(environment.runner, WorkerRunner):
        return
    environment.parsed_options.lab_target = target(environment)
    logger.info("target: %s", environment.parsed_options.lab_target)


@events.test_start.add_listener
def _schedule_warmup_reset(environment: Environment, **kwargs: object) -> None:
    """One continuous load: the warm-up is its first --warmup-s seconds, not a separate run
    whose queued leftovers would land in the measured one; only its statistics are dropped."""
    warmup = getattr(environment.parsed_options, "warmup_s", 0.0)
    if warmup > 0 and not isinstance(environment.runner, WorkerRunner):
        gevent.spawn_later(warmup, environment.stats.reset_all)


def path(scenario: str, **values: object) -> str:
    """The scenario's request path (defined once, in loadtest/scenarios.py) with its values."""
    return SCENARIOS[scenario].path.format(**values)


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
        return self.environment.parsed_options


@tag("items")
class ItemsUser(LabUser):
    @task
    def read_item(self) -> None:
        item_id = random.randint(1, ITEM_IDS)
        self.client.get(path("items", item_id=item_id), name="/items/[id]")


@tag("db")
class DbUser(LabUser):
    @task
    def slow_query(self) -> None:
        self.client.get(path("db", delay_ms=self.options.delay_ms), name="/io/db")


@tag("upstream")
class UpstreamUser(LabUser):
    @task
    def upstream_call(self) -> None:
        self.client.get(path("upstream", delay_ms=self.options.delay_ms), name="/io/upstream")


@tag("cpu-python")
class CpuPythonUser(LabUser):
    @task
    def cpu_python(self) -> None:
        self.client.get(path("cpu-python", work=self.options.work), name="/cpu?kind=python")


@tag("cpu-native")
class CpuNativeUser(LabUser):
    @task
    def cpu_native(self) -> None:
        self.client.get(path("cpu-native", work=self.options.work), name="/cpu?kind=native")


@tag("mixed")
class MixedUser(LabUser):
    @task
    def mixed(self) -> None:
        self.client.get(path("mixed"), name="/mixed")


@tag("write")
class WriteUser(LabUser):
    @task
    def create_order(self) -> None:
        order = {"item_id": random.randint(1, ITEM_IDS), "quantity": random.randint(1, 5)}
        with self.client.post(
            path("write"), json=order, name="/orders", catch_response=True
        ) as response:
            if response.status_code != 201:
                response.failure(f"expected 201, got {response.status_code}")
