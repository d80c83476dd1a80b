"""Locust users for the lab: one user class per scenario, made from the scenario table.

Locust loads it through loadtest/locustfile.py (the path every launcher names):

    locust --config loadtest/locust.conf                      # web UI on http://127.0.0.1:8089
    locust --config loadtest/locust.conf --headless -t 30s --variant sync UpstreamUser

Custom arguments (also editable in the web UI): --variant picks the API (any variant of
services/registry.py) whose URL comes from generator/targets.py (LAB_TARGETS, else the native
lab ports); a Host field / --host that is given wins over it. --delay-ms and --work fill the
scenario paths.

By default every user sends its next request as soon as the previous answer arrives (wait_time
0): a closed loop, so N users keep exactly N requests in flight and throughput = N / latency
(Little's law). With --arrival-rate R the same classes run an open loop instead
(generator/open_loop.py): the run's users share R arrivals per second on a schedule (Poisson or
fixed, --arrivals), each arrival's request is a greenlet of its own, sent whether or not earlier
ones were answered (at most --max-in-flight at once: beyond it an arrival is dropped and
reported as a failure), and Locust records each request's time from its *scheduled* start.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from argparse import Namespace
from typing import Any

import gevent
from gevent.pool import Group
from locust import FastHttpUser, constant, events, tag
from locust.argument_parser import LocustArgumentParser
from locust.env import Environment
from locust.runners import LocalRunner, WorkerRunner
from locust.user.task import LOCUST_STATE_STOPPING

from loadtest.generator import open_loop
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
    parser.add_argument(
        "--arrival-rate",
        type=float,
        default=0.0,
        help="open loop: requests started per second on a schedule, answered or not, latency "
        "from the scheduled start (shared by the users); 0 = closed loop",
    )
    parser.add_argument(
        "--arrivals",
        choices=list(open_loop.ARRIVAL_KINDS),
        default="poisson",
        help="open loop's schedule: poisson (random gaps, mean 1/rate) or fixed (every 1/rate)",
    )
    parser.add_argument(
        "--max-in-flight",
        type=int,
        default=open_loop.DEFAULT_MAX_IN_FLIGHT,
        help="open loop: most requests in flight; arrivals beyond it are dropped (failures)",
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
        timer = threading.Timer(warmup, _reset_after_warmup, args=(environment,))
        timer.daemon = True  # a run shorter than its warm-up must not wait for it
        timer.start()


def _reset_after_warmup(environment: Environment) -> None:
    environment.stats.reset_all()
    for books in OPEN_LOOP_BOOKS:
        books.reset()


# The open loop's accounting of this process's users in the current run (LabUser appends).
OPEN_LOOP_BOOKS: list[open_loop.Arrivals] = []


def _start_open_loop_books(environment: Environment, **kwargs: object) -> None:
    OPEN_LOOP_BOOKS.clear()


def _write_open_loop_books(environment: Environment, **kwargs: object) -> None:
    """PREFIX_arrivals.json beside a headless run's --csv: scheduled, sent, dropped, how late
    the generator sent them. Single process only (compare and capacity): a distributed run's
    books are spread over its workers."""
    options = environment.parsed_options
    prefix = getattr(options, "csv_prefix", None)
    rate = getattr(options, "arrival_rate", 0.0) or 0.0
    if options is None or not prefix or rate <= 0:
        return
    if not isinstance(environment.runner, LocalRunner):
        return
    found = open_loop.summary(OPEN_LOOP_BOOKS, rate, options.arrivals, options.max_in_flight)
    open_loop.write_summary(prefix, found)


listen(events.init_command_line_parser, _arguments)
listen(events.test_start, _decide_target)
listen(events.test_start, _schedule_warmup_reset)
listen(events.test_start, _start_open_loop_books)
listen(events.test_stop, _write_open_loop_books)
# The server's side while the load runs (/runtime polls, a bystander probe, the web UI's Server
# tab, CSVs beside --csv): registered after _decide_target, whose lab_target it watches.
SERVER_WATCH = ServerWatchHooks(TARGETS)
listen(events.init, SERVER_WATCH.on_init)
listen(events.test_start, SERVER_WATCH.on_test_start)
listen(events.test_stop, SERVER_WATCH.on_test_stop)
listen(events.quitting, SERVER_WATCH.on_quitting)


class OpenLoop:
    """One user's open loop: its share of the schedule, its accounting, its requests out."""

    def __init__(self, options: Namespace) -> None:
        users = getattr(options, "num_users", None) or 1  # the run's users share the rate
        rate = open_loop.share(options.arrival_rate, users)
        self.schedule = open_loop.Schedule(rate, options.arrivals, time.perf_counter())
        self.books = open_loop.Arrivals(
            max(1, math.ceil(open_loop.share(options.max_in_flight, users)))
        )
        self.requests = Group()  # one greenlet per request in flight
        OPEN_LOOP_BOOKS.append(self.books)


class LabUser(FastHttpUser):
    abstract = True
    wait_time = constant(0)  # closed loop, see the module docstring
    scenario_name = ""  # set on each generated class

    def __init__(self, environment: Environment) -> None:
        # Set per user, from the target decided when this run started, so switching the variant
        # between two runs in the web UI switches the URL. Never written to environment.host
        # or the class: Locust would keep it, and the web UI would prefill the Host field.
        options = environment.parsed_options
        self.host = getattr(options, "lab_target", None) or target(environment)
        self.open_loop: OpenLoop | None = None
        if options is not None and (getattr(options, "arrival_rate", 0.0) or 0.0) > 0:
            self.open_loop = OpenLoop(options)
            # one connection per request in flight (FastHttpUser's default pool holds 10)
            self.concurrency = self.open_loop.books.cap
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

    def send_scheduled(self, scenario: Scenario, scheduled_at: float) -> None:
        """`send`, for the open loop: Locust records the time from `scheduled_at` (a
        time.perf_counter() value), not from the send."""
        path = scenario.url(vars(self.options))
        kwargs: dict[str, Any] = {"name": scenario.request_name}
        if scenario.body is not None:
            kwargs["json"] = scenario.body()
        with self.client.request(scenario.method, path, catch_response=True, **kwargs) as response:
            # a late send or a full server is in the latency
            response.request_meta["response_time"] = open_loop.response_time_ms(
                scheduled_at, time.perf_counter()
            )
            expected = scenario.expect_status
            if expected is not None and response.status_code != expected:
                response.failure(f"expected {expected}, got {response.status_code}")

    def arrive(self, scenario: Scenario, loop: OpenLoop) -> None:
        """Open loop: wait for the next scheduled arrival and start its request in a greenlet
        of its own, unless --max-in-flight requests are already out (then: a failure)."""
        at = loop.schedule.next()
        gevent.sleep(max(0.0, at - time.perf_counter()))
        if self._state == LOCUST_STATE_STOPPING:
            return  # the run ended during the wait: this arrival is past its end
        token = loop.books.admit(at, time.perf_counter())
        if token is None:
            self._fail(scenario, f"{open_loop.DROPPED} ({loop.books.cap})", 0.0)
            return

        def request() -> None:
            self.send_scheduled(scenario, at)
            loop.books.finish(token)  # not reached when killed at the end (on_stop counts it)

        loop.requests.spawn(request)

    def _fail(self, scenario: Scenario, message: str, response_time_ms: float) -> None:
        """An open-loop arrival that got no answer, as a failure in Locust's statistics."""
        self.environment.events.request.fire(
            request_type=scenario.method,
            name=scenario.request_name,
            response_time=response_time_ms,
            response_length=0,
            exception=OpenLoopFailure(message),
            context={},
            start_time=time.time(),
            url=None,
            response=None,
        )

    def on_stop(self) -> None:
        """Open loop: requests in flight get what is left of --stop-timeout to be answered
        (Locust kills this user at its end), as closed-loop users do; those still out then
        are failures, recorded with the time they waited so far: never left out."""
        loop = self.open_loop
        if loop is None:
            return
        loop.requests.join(timeout=max(0.0, (self.environment.stop_timeout or 0.0) - 0.5))
        now = time.perf_counter()
        loop.requests.kill(block=True, timeout=1)  # first: none of them can report after this
        scenario = SCENARIOS[self.scenario_name]
        for waited in loop.books.abandon(now):
            self._fail(scenario, open_loop.UNFINISHED, waited)


class OpenLoopFailure(Exception):
    """Why an open-loop arrival failed without an answer (dropped, or unfinished at stop)."""


def user_class(scenario: Scenario) -> type[LabUser]:
    """The Locust user of `scenario`: one task sending its request, tagged with its name."""

    def request(user: LabUser) -> None:
        if user.open_loop is None:
            user.send(scenario)
        else:
            user.arrive(scenario, user.open_loop)

    request.__name__ = request.__qualname__ = scenario.name.replace("-", "_")
    attributes = {
        "tasks": [tag(scenario.name)(request)],
        "__module__": __name__,
        "__doc__": f"{scenario.method} {scenario.path} (scenario {scenario.name!r})",
        "scenario_name": scenario.name,
    }
    return type(scenario.user_class, (LabUser,), attributes)


# Locust finds user classes among a locustfile's module-level names: loadtest/locustfile.py
# adds these to its own (ItemsUser, DbUser, ... as the scenario table names them).
USER_CLASSES: dict[str, type[LabUser]] = {s.user_class: user_class(s) for s in SCENARIOS.values()}
