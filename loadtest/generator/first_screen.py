"""The start form a new trainee sees: one scenario ticked, each scenario's request beside its
class name, the variant first among the custom parameters, no notice asking for a Host.

Only Locust's template arguments change (its UI is not forked): server_tab.py renders Locust's
own index.html with `first_screen(template_args)`. Pure, so the tests need no Locust.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from loadtest.generator.scenarios import SCENARIOS, Scenario

# The scenario ticked on the first screen: a slow upstream call shows the concurrency models
# apart (threadpool vs event loop) without saturating the CPU of a 2-core laptop.
FIRST_SCENARIO = "upstream"
# The custom parameters a trainee sets, shown first (the shapes' knobs follow).
FIRST_OPTIONS = ("variant", "delay_ms", "work")


def describe(scenario: Scenario | None, first: bool = False) -> str:
    """What the picker shows beside a class name (Locust's column for the class's host)."""
    if scenario is None:
        return ""
    request = f"{scenario.method} {scenario.path.replace('{item_id}', '<id>')}"
    return f"{request}  ·  on the Variant chosen under Custom parameters ▾" if first else request


def first_screen(template_args: Mapping[str, Any]) -> dict[str, Any]:
    args = dict(template_args)
    by_class = {s.user_class: s for s in SCENARIOS.values()}
    first = SCENARIOS[FIRST_SCENARIO].user_class
    users: Mapping[str, Any] = args.get("users") or {}
    if first in users:
        order = [first, *(name for name in by_class if name != first and name in users)]
        order += sorted(set(users) - set(order))
        # The picker lists `users` in this order and shows each one's "host": here, the request
        # the class sends (the classes themselves have no host: the variant decides it).
        args["users"] = {
            name: {**users[name], "host": describe(by_class.get(name), name == first)}
            for name in order
        }
        # The picker starts with `available_user_classes` ticked (Locust: all of them); the
        # server still accepts any class of the locustfile that is ticked at Start.
        args["available_user_classes"] = [first]
    if not args.get("host"):
        # Locust asks for a Host when the classes have none, but here the empty Host is right:
        # the Variant decides the URL. Its own label for classes with hosts says the truth:
        # "Host (setting this will override the host for the User classes)".
        args["missing_host_warning"] = False
        args["override_host_warning"] = True
    options: Mapping[str, Any] = args.get("extra_options") or {}
    ordered = [name for name in FIRST_OPTIONS if name in options]
    args["extra_options"] = {name: options[name] for name in [*ordered, *sorted(options)]}
    return args
