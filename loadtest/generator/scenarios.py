"""The scenario table: each scenario declared once, everything else derived from it.

From each `Scenario` come the Locust user class (generator/users.py), the custom arguments a
headless run passes (`options`), its Little's-law demand (analysis/littles_law.py), which CPU
unit compare measures on the target (`cpu_unit_kind`), and the test parametrisations. Adding a
scenario is one entry here (plus the docs). Imports neither Locust nor FastAPI: compare and the
tests read this table in processes that must not be monkey-patched by gevent.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

# What a request's ceiling depends on (analysis/littles_law.py turns it into a Demand):
#   upstream  waits delay_ms on the mock upstream, holding an upstream connection
#   db        waits delay_ms in PostgreSQL (pg_sleep), holding a DB connection
#   cpu       work units of CPU of `cpu_kind`, nothing else
#   mixed     /mixed: a short query, an upstream call of the default delay, a little CPU
#   none      no fixed wait: bounded by the server's CPU per request, no useful ceiling
DemandKind = Literal["upstream", "db", "cpu", "mixed", "none"]
# CPU work that holds the GIL (a pure-Python loop) or releases it (hashlib).
CpuKind = Literal["python", "native"]

ITEM_IDS = 100_000  # the seeded items are 1..100000
# Path fields filled from the run's custom arguments (--delay-ms, --work); the others are drawn
# afresh for every request.
OPTION_FIELDS = ("delay_ms", "work")
RANDOM_FIELDS: dict[str, Callable[[], object]] = {
    "item_id": lambda: random.randint(1, ITEM_IDS),
}


def random_order() -> dict[str, object]:
    return {"item_id": random.randint(1, ITEM_IDS), "quantity": random.randint(1, 5)}


@dataclass(frozen=True)
class Scenario:
    name: str  # CLI name and Locust tag
    user_class: str  # Locust user class: what people pick in the web UI and on the command line
    method: str
    path: str  # template: {delay_ms}, {work} from the custom arguments, {item_id} drawn at random
    request_name: str  # Locust's name= for the request: one row in its statistics
    demand: DemandKind
    cpu_kind: CpuKind = "python"  # the CPU work's kind, for demand "cpu" and "mixed"
    body: Callable[[], dict[str, object]] | None = None  # JSON body, made afresh per request
    expect_status: int | None = None  # any other status is a failure (None: Locust's 2xx/3xx)

    @cached_property  # read for every request Locust sends
    def fields(self) -> tuple[str, ...]:
        """The fields the path template names, in order."""
        return tuple(f for _, f, _, _ in string.Formatter().parse(self.path) if f)

    @cached_property
    def options(self) -> tuple[str, ...]:
        """The custom arguments its requests use: a headless run passes only these."""
        return tuple(f for f in OPTION_FIELDS if f in self.fields)

    @property
    def cpu_unit_kind(self) -> CpuKind | None:
        """The CPU kind whose unit time its ceiling needs (measured on the target), if any."""
        return self.cpu_kind if self.demand in ("cpu", "mixed") else None

    def shown(self, options: Mapping[str, object]) -> str:
        """The path as a report shows it: option fields filled, random fields left as {name}."""
        values = {f: options[f] if f in OPTION_FIELDS else f"{{{f}}}" for f in self.fields}
        return self.path.format(**values)

    def url(self, options: Mapping[str, object]) -> str:
        """The request path: option fields from `options`, random fields drawn now."""
        values = {f: options[f] if f in OPTION_FIELDS else RANDOM_FIELDS[f]() for f in self.fields}
        return self.path.format(**values)


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("items", "ItemsUser", "GET", "/items/{item_id}", "/items/[id]", "none"),
        Scenario("db", "DbUser", "GET", "/io/db?delay_ms={delay_ms}", "/io/db", "db"),
        Scenario("upstream", "UpstreamUser", "GET", "/io/upstream?delay_ms={delay_ms}",
                 "/io/upstream", "upstream"),
        Scenario("cpu-python", "CpuPythonUser", "GET", "/cpu?work={work}&kind=python",
                 "/cpu?kind=python", "cpu", cpu_kind="python"),
        Scenario("cpu-native", "CpuNativeUser", "GET", "/cpu?work={work}&kind=native",
                 "/cpu?kind=native", "cpu", cpu_kind="native"),
        Scenario("mixed", "MixedUser", "GET", "/mixed", "/mixed", "mixed"),
        Scenario("write", "WriteUser", "POST", "/orders", "/orders", "none",
                 body=random_order, expect_status=201),
    )
}  # fmt: skip
