"""Little's law ceilings: the most req/s a variant can serve, from its concurrency limits.

Little's law: requests in service = throughput x time in service, so throughput <= slots / S,
where S is the time one request holds a slot. Two kinds of slot bound each variant:

- concurrency slots, held for the whole of S: users, threadpool tokens, DB connections, upstream
  connections, or the one event loop when the code blocks it;
- CPU slots, held only for the CPU part of S: one per process under the GIL or on the loop, one
  per pool worker or thread that escapes the GIL, never more than the machine's cores.

ceiling = min(concurrency / S, cpu slots / cpu time), times the gunicorn workers (API_WORKERS);
the CPU term is capped by the cores across all workers. Pure functions: unit-tested.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

# Kept equal to services.api.contract.MIXED_WORK by a test: importing the API here would read
# its settings from the environment, which a load generator has no business doing.
MIXED_WORK_UNITS = 2
# A DB round trip of /mixed's primary-key read; small next to the upstream call.
MIXED_DB_S = 0.001
CPU_UNIT_S = 0.001  # services/api/work.py: 1 unit is about 1 ms of one core


@dataclass(frozen=True)
class Limits:
    """The settings in force on a target (its /runtime "settings") that bound concurrency."""

    threadpool_tokens: int = 40
    db_pool_max: int = 20
    upstream_max_connections: int = 1000
    cpu_executor: str = "process"
    cpu_workers: int = 2
    api_workers: int = 1
    default_delay_ms: int = 100

    @classmethod
    def from_settings(cls, settings: Mapping[str, object]) -> Limits:
        known = {k: v for k, v in settings.items() if k in cls.__dataclass_fields__}
        if settings.get("api_server", "uvicorn") != "gunicorn":
            known["api_workers"] = 1  # API_WORKERS only counts under gunicorn
        return cls(**known)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Demand:
    """What one request of a scenario needs, measured alone (no queueing)."""

    service_s: float  # S: wall time of one request
    cpu_s: float  # the CPU part of S
    cpu_kind: str  # "python" (holds the GIL) or "native" (releases it)
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
    scenario: str, delay_ms: int, work: int, limits: Limits, cpu_unit_s: float = CPU_UNIT_S
) -> Demand | None:
    """Per-request demand of a scenario; None when there is no fixed wait to speak of."""
    delay_s = delay_ms / 1000
    if scenario == "upstream":
        return Demand(delay_s, 0.0, "python", holds_db=False, holds_upstream=True)
    if scenario == "db":
        return Demand(delay_s, 0.0, "python", holds_db=True, holds_upstream=False)
    if scenario in ("cpu-python", "cpu-native"):
        cpu_s = work * cpu_unit_s
        return Demand(cpu_s, cpu_s, scenario.removeprefix("cpu-"), False, False)
    if scenario == "mixed":
        # /mixed: one short query, one upstream call of DEFAULT_DELAY_MS, ~2 ms of Python CPU.
        cpu_s = MIXED_WORK_UNITS * cpu_unit_s
        service = MIXED_DB_S + limits.default_delay_ms / 1000 + cpu_s
        return Demand(service, cpu_s, "python", holds_db=False, holds_upstream=True)
    # items, write: a millisecond of framework and driver CPU per request, no wait to divide by.
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
    cpu_unit_s: float = CPU_UNIT_S,
) -> Ceiling:
    d = demand(scenario, delay_ms, work, limits, cpu_unit_s)
    if d is None:
        return Ceiling(None, "n/a: no fixed wait, bounded by server CPU per request")
    if d.service_s <= 0:
        return Ceiling(None, "n/a: zero service time")
    workers = limits.api_workers
    slots, slot_name = _concurrency(variant, d, limits)
    conc = _bound(users, workers, slots, slot_name)
    candidates = [(conc[0] / d.service_s, f"{conc[1]} / {d.service_s:.3f} s")]
    if d.cpu_s > 0:
        par_slots, par_name = _cpu_slots(variant, d, limits)
        par = _bound(users, workers, par_slots, par_name, cores=cores)
        cpu_term = "" if d.cpu_s == d.service_s else " CPU"
        candidates.append((par[0] / d.cpu_s, f"{par[1]} / {d.cpu_s:.3f} s{cpu_term}"))
    rps, why = min(candidates, key=lambda c: c[0])
    if variant in ("async", "offload") and d.cpu_s == 0:
        why += " (until the CPU saturates)"
    return Ceiling(rps, why)


def _concurrency(variant: str, d: Demand, limits: Limits) -> tuple[float, str]:
    """Requests one process can hold in service at once, and the name of what limits them."""
    if variant == "blocking":
        return 1, "loop"  # each request blocks the loop for all of S
    options: list[tuple[float, str]] = [(math.inf, "users")]
    if variant == "sync":
        options.append((limits.threadpool_tokens, "tokens"))
    if d.holds_db:
        options.append((limits.db_pool_max, "DB conns"))
    if d.holds_upstream:
        options.append((limits.upstream_max_connections, "upstream conns"))
    return min(options, key=lambda o: o[0])


def _cpu_slots(variant: str, d: Demand, limits: Limits) -> tuple[float, str]:
    """CPU work one process can run in parallel, and the name of what limits it."""
    if variant in ("async", "blocking"):
        return 1, "loop"  # inline on the loop thread, whatever the kind
    if variant == "sync":
        return (1, "GIL") if d.cpu_kind == "python" else (limits.threadpool_tokens, "tokens")
    # offload: an executor; threads only help work that releases the GIL
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
