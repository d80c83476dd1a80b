"""What a drill's Locust loads: the lab's users, each write tagged with a per-run note, and a
recorder writing every request's outcome to PREFIX_requests.csv (the drills need per-second
status counts and the id of every acknowledged order; Locust's statistics only aggregate).

    locust -f loadtest/generator/drill_locust.py --headless --csv PREFIX --order-note RUN \\
        ItemsUser UpstreamUser WriteUser
"""

from __future__ import annotations

import csv
import itertools
import json
import logging
import time
from typing import Any

from locust import events
from locust.argument_parser import LocustArgumentParser
from locust.env import Environment
from locust.runners import WorkerRunner

from loadtest.generator.drill_csv import (
    CONNECT_TIMEOUT_S,
    REQUEST_COLUMNS,
    requests_path,
    started_path,
)
from loadtest.generator.hooks import listen
from loadtest.generator.scenarios import Scenario
from loadtest.generator.users import USER_CLASSES, LabUser

logger = logging.getLogger(__name__)
_serial = itertools.count(1)


def _arguments(parser: LocustArgumentParser) -> None:
    for flag, what in (
        ("--overload-at-s", "overload shape: second the overload starts"),
        ("--overload-s", "overload shape: how long it lasts"),
        ("--overload-users", "overload shape: users during it"),
        ("--total-s", "overload shape: whole run"),
    ):
        parser.add_argument(flag, type=float, default=0.0, include_in_web_ui=False, help=what)
    parser.add_argument(
        "--overload-classes",
        default="",
        include_in_web_ui=False,
        help="overload shape: comma-separated user classes (default: every class)",
    )
    parser.add_argument(
        "--order-note",
        default="",
        include_in_web_ui=False,
        help="drills: tag each order's note with this run id (NOTE-<serial>)",
    )


class Recorder:
    """Every request's outcome, kept in memory and written when the test stops."""

    def __init__(self) -> None:
        self.rows: list[tuple[object, ...]] = []

    def on_request(
        self,
        name: str,
        response_time: float,
        response: Any,
        exception: BaseException | None,
        start_time: float,
        context: dict[str, Any],
        **kwargs: object,
    ) -> None:
        status = getattr(response, "status_code", 0) or 0
        order_id: object = ""
        if status == 201:
            try:
                order_id = json.loads(response.text)["id"]
            except (ValueError, KeyError, TypeError):
                order_id = ""
        error = "" if exception is None else f"{type(exception).__name__}: {exception}"[:200]
        end = start_time + response_time / 1000
        self.rows.append(
            (
                f"{start_time:.3f}",
                f"{end:.3f}",
                name,
                status,
                f"{response_time:.1f}",
                order_id,
                context.get("note", ""),
                error,
            )
        )

    def started(self, environment: Environment, **kwargs: object) -> None:
        prefix = getattr(environment.parsed_options, "csv_prefix", None)
        if prefix and not isinstance(environment.runner, WorkerRunner):
            started_path(prefix).write_text(f"{time.time():.3f}\n")

    def write(self, environment: Environment, **kwargs: object) -> None:
        prefix = getattr(environment.parsed_options, "csv_prefix", None)
        if not prefix or isinstance(environment.runner, WorkerRunner):
            return
        with requests_path(prefix).open("w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(REQUEST_COLUMNS)
            writer.writerows(self.rows)


RECORDER = Recorder()
listen(events.init_command_line_parser, _arguments)
listen(events.test_start, RECORDER.started)
listen(events.request, RECORDER.on_request)
listen(events.quitting, RECORDER.write)


class NotedUser(LabUser):
    """Sends its scenario's request, each order's note `<--order-note>-<serial>`, so that the
    durability check finds the row of every single request, whatever the client saw."""

    abstract = True
    # A connect that takes seconds on loopback or a local container network has failed: under
    # compose, one to a published port whose container is gone waits ~14 s for "No route to
    # host", and with the default 60 s the users sit out the fresh container's first seconds.
    connection_timeout = CONNECT_TIMEOUT_S

    def send(self, scenario: Scenario) -> None:
        path = scenario.url(vars(self.options))
        kwargs: dict[str, Any] = {"name": scenario.request_name}
        if scenario.body is not None:
            body = scenario.body()
            run = getattr(self.options, "order_note", "")
            if run:
                body["note"] = f"{run}-{next(_serial)}"
            kwargs["json"] = body
            kwargs["context"] = {"note": body.get("note", "")}
        with self.client.request(scenario.method, path, catch_response=True, **kwargs) as response:
            expected = scenario.expect_status
            code = response.status_code
            if not (code == expected if expected else 200 <= code < 400):
                error = getattr(response, "error", None)  # no answer: what the socket said
                cause = f" {type(error).__name__}: {error}" if code == 0 and error else ""
                response.failure(f"HTTP {code}{cause}")


# The drill's user classes, under the names of the scenario table (ItemsUser, WriteUser, ...).
globals().update(
    {
        name: type(name, (NotedUser, cls), {"__module__": __name__})
        for name, cls in USER_CLASSES.items()
    }
)
