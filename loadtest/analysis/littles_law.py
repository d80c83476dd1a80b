"""Compute Little's-law ceilings: the most req/s a variant can serve, from its limits.

Little's law: requests in service = throughput x time in service, so throughput <= slots / S,
where S is the time one request holds a slot. Two kinds of slot bound each variant:

- concurrency slots, held for the whole of S: users, threadpool tokens, DB connections, upstream
  connections, or the one event loop when the code blocks it;
- CPU slots, held only for the CPU part of S: one per process under the GIL or on the loop, one
  per pool worker or thread that escapes the GIL, never more than the machine's cores.

ceiling = min(concurrency / S, cpu slots / cpu time), times the gunicorn workers (API_WORKERS);
the CPU term is capped by the cores across all workers. Which slots a variant has comes from
its traits in services/registry.py (io, cpu); what a request needs, from the demand kind its
scenario declares (generator/scenarios.py). Pure functions: unit-tested.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from loadtest.generator.scenarios import SCENARIOS, CpuKind, Scenario
from services.registry import Variant
from services.registry import get as get_variant

# A DB round trip of /mixed's primary-key read, small next to the upstream call (to rerun:
# `make compare SCENARIOS=items USERS=1` reports one primary-key read's p50).
MIXED_DB_S = 0.001


@dataclass(frozen=True)
class Limits:
    """What bounds concurrency on a target, from its /runtime: the settings in force
    ("settings") and the API's fixed constants ("constants"). No defaults here: a copy of the
    API's would drift from it; tests build these from the API's own Settings."""

    threadpool_tokens: int
    db_pool_max: int
    upstream_max_connections: int
    cpu_executor: str
    cpu_workers: int
    api_workers: int  # gunicorn worker processes; 1 under uvicorn
    default_delay_ms: int  # /mixed's upstream call
    mixed_work: int  # /mixed's CPU work units
    cpu_unit_ms: float  # the API's nominal time of one work unit (compare measures the real one)

    @classmethod
    def from_runtime(cls, runtime: Mapping[str, Any]) -> Limits:
        """From a /runtime answer; a ValueError names what it lacks (an older API, say)."""
        settings: Mapping[str, Any] = runtime.get("settings") or {}
        constants: Mapping[str, Any] = runtime.get("constants") or {}
        values = {**settings, **constants}
        if values.get("api_server", "uvicorn") != "gunicorn":
            values["api_workers"] = 1  # API_WORKERS only counts under gunicorn
        names = [f.name for f in fields(cls)]
        missing = [n for n in names if values.get(n) is None]
        if missing:
            raise ValueError(f"/runtime lacks {', '.join(missing)} (settings or constants)")
        return cls(**{n: values[n] for n in names})


@dataclass(frozen=True)
class Demand:
    """What one request of a scenario needs, measured alone (no queueing)."""

    service_s: float  # S: wall time of one request
    cpu_s: float  # the CPU part of S
    cpu_kind: CpuKind  # "python" (holds the GIL) or "native" (releases it)
    holds_db: bool  # a DB connection for all of S
    holds_upstream: bool  # an upstream connection for (nearly) all of S


@dataclass(frozen=True)
class Ceiling:
    rps: float | None  # None: Little's law gives no useful bound (see why)
    why: str  # one line for the report, e.g. "40 tokens / 0.200 s"

    def latency_s(self, users: int) -> float | None:
        """Expected response time of a closed loop of `users` at the ceiling: R = N / X."""
        return users / self.rps if self.rps else None


def demand(
    scenario: str, delay_ms: int, work: int, limits: Limits, cpu_unit_s: float | None = None
) -> Demand | None:
    """Per-request demand of a scenario, from the demand kind its table entry declares; None
    when there is no fixed wait to speak of. `cpu_unit_s`: measured, else the API's nominal."""
    s: Scenario = SCENARIOS[scenario]
    unit = limits.cpu_unit_ms / 1000 if cpu_unit_s is None else cpu_unit_s
    delay_s = delay_ms / 1000
    match s.demand:
        case "upstream":
            return Demand(delay_s, 0.0, s.cpu_kind, holds_db=False, holds_upstream=True)
        case "db":
            return Demand(delay_s, 0.0, s.cpu_kind, holds_db=True, holds_upstream=False)
        case "cpu":
            return Demand(work * unit, work * unit, s.cpu_kind, False, False)
        case "mixed":
            # /mixed: one short query, one upstream call of DEFAULT_DELAY_MS, a little CPU.
            cpu_s = limits.mixed_work * unit
            service = MIXED_DB_S + limits.default_delay_ms / 1000 + cpu_s
            return Demand(service, cpu_s, s.cpu_kind, holds_db=False, holds_upstream=True)
        case "none":
            # a millisecond of framework and driver CPU per request, no wait to divide by
            return None


def ceiling(
    scenario: str,
    variant: str,
    users: int,
    *,
    delay_ms: int,
    work: int,
    limits: Limits,
    cores: int,
    cpu_unit_s: float | None = None,
) -> Ceiling:
    """The most req/s `variant` (its registry traits) can serve `scenario` at `users`."""
    d = demand(scenario, delay_ms, work, limits, cpu_unit_s)
    if d is None:
        return Ceiling(None, "n/a: no fixed wait, bounded by server CPU per request")
    if d.service_s <= 0:
        return Ceiling(None, "n/a: zero service time")
    v = get_variant(variant)
    workers = limits.api_workers
    slots, slot_name = _concurrency(v, d, limits)
    conc = _bound(users, workers, slots, slot_name)
    candidates = [(conc[0] / d.service_s, f"{conc[1]} / {d.service_s:.3f} s")]
    if d.cpu_s > 0:
        par_slots, par_name = _cpu_slots(v, d, limits)
        par = _bound(users, workers, par_slots, par_name, cores=cores)
        cpu_term = "" if d.cpu_s == d.service_s else " CPU"
        candidates.append((par[0] / d.cpu_s, f"{par[1]} / {d.cpu_s:.3f} s{cpu_term}"))
    rps, why = min(candidates, key=lambda c: c[0])
    if v.io == "loop" and d.cpu_s == 0:
        why += " (until the CPU saturates)"  # nothing but the users bounds awaited I/O
    return Ceiling(rps, why)


def _concurrency(v: Variant, d: Demand, limits: Limits) -> tuple[float, str]:
    """Requests one process can hold in service at once, and the name of what limits them."""
    if v.io == "blocks-loop":
        return 1, "loop"  # each request blocks the loop for all of S
    options: list[tuple[float, str]] = [(math.inf, "users")]
    if v.io == "threadpool":
        options.append((limits.threadpool_tokens, "tokens"))
    if d.holds_db:
        options.append((limits.db_pool_max, "DB conns"))
    if d.holds_upstream:
        options.append((limits.upstream_max_connections, "upstream conns"))
    return min(options, key=lambda o: o[0])


def _cpu_slots(v: Variant, d: Demand, limits: Limits) -> tuple[float, str]:
    """CPU work one process can run in parallel, and the name of what limits it."""
    if v.cpu == "loop":
        return 1, "loop"  # inline on the loop thread, whatever the kind
    if v.cpu == "threadpool":
        return (1, "GIL") if d.cpu_kind == "python" else (limits.threadpool_tokens, "tokens")
    # an executor: threads only help work that releases the GIL
    if limits.cpu_executor == "thread" and d.cpu_kind == "python":
        return 1, "GIL (thread executor)"
    return limits.cpu_workers, f"{limits.cpu_executor} workers"


def _bound(
    users: int,
    workers: int,
    per_process: float,
    name: str,
    cores: int | None = None,
) -> tuple[float, str]:
    """min(users, workers x per_process[, cores]) with a label naming the binding term."""
    total = workers * per_process
    if workers > 1 and not math.isinf(per_process):
        label = f"{workers} workers x {_n(per_process)} {name}"
    else:
        label = f"{_n(total)} {name}"
    options = [(float(users), f"{users} user{'' if users == 1 else 's'}"), (total, label)]
    if cores is not None:
        options.append((float(cores), f"{cores} cores"))
    # ties go to the first: users, then the server's own limit, then cores
    return min(options, key=lambda o: o[0])


def _n(value: float) -> str:
    return "inf" if math.isinf(value) else f"{value:g}"
