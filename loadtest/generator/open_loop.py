"""The open loop's schedule and bookkeeping, kept free of Locust and gevent (unit-tested alone).

Closed loop (the lab's default): each user sends its next request when the answer arrives, so a
slow server slows its own load, and the queue it would build never shows (coordinated omission).
Open loop (`--arrival-rate R`): requests start on a schedule whatever happened to earlier ones,
and each one's latency counts from its *scheduled* start, so time spent waiting for a late
generator or a full server is in the numbers.

- `Schedule`: the arrival times, absolute (start + the sum of the gaps), so a generator that
  wakes up late sends what it owes at once instead of shifting every later arrival.
  `poisson` draws exponential gaps (independent arrivals, as real traffic); `fixed` uses 1/R.
- `Arrivals`: what happened to each arrival. At most `cap` requests are in flight: an arrival
  beyond that is dropped (reported to Locust as a failure, never silently) so memory stays
  bounded; requests still unanswered when the run ends are reported as failures too, with the
  time they waited so far. It also keeps how late the generator sent each request.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

ArrivalKind = Literal["poisson", "fixed"]
ARRIVAL_KINDS: tuple[ArrivalKind, ...] = ("poisson", "fixed")
DEFAULT_MAX_IN_FLIGHT = 1000
# Failure messages Locust shows; the analysis counts them by these prefixes.
DROPPED = "dropped by the open loop: max in flight"
UNFINISHED = "unanswered when the run stopped"


class Schedule:
    """Arrival times (seconds on the caller's clock) at `rate` per second from `start`."""

    def __init__(
        self, rate: float, kind: ArrivalKind, start: float, rng: random.Random | None = None
    ) -> None:
        if not rate > 0 or math.isinf(rate):
            raise ValueError(f"arrival rate must be a positive number, got {rate!r}")
        if kind not in ARRIVAL_KINDS:
            raise ValueError(f"arrivals must be one of {', '.join(ARRIVAL_KINDS)}, got {kind!r}")
        self.rate, self.kind = rate, kind
        self._rng = rng or random.Random()
        self._next = start + self._gap()

    def _gap(self) -> float:
        if self.kind == "fixed":
            return 1.0 / self.rate
        return self._rng.expovariate(self.rate)

    def next(self) -> float:
        """The next arrival's time; each call moves one arrival on."""
        at = self._next
        self._next += self._gap()
        return at


def share(total: float, users: int) -> float:
    """One user's part of a run-wide figure (rate, cap) when `users` users split it."""
    return total / max(1, users)


@dataclass
class Arrivals:
    """In-flight cap and accounting for one user's open loop (gevent runs one greenlet at a
    time, so plain counters are safe)."""

    cap: int
    scheduled: int = 0
    sent: int = 0
    dropped: int = 0
    completed: int = 0
    unfinished: int = 0
    peak_in_flight: int = 0
    lags_ms: list[float] = field(default_factory=list)  # send time - scheduled time, per request
    first_at: float | None = None  # the first and last arrival's scheduled time
    last_at: float | None = None
    _pending: dict[int, float] = field(default_factory=dict, init=False)  # token -> scheduled
    _tokens: itertools.count[int] = field(default_factory=itertools.count, init=False)

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def admit(self, scheduled_at: float, now: float) -> int | None:
        """A token for the request of this arrival, or None: the cap is reached, it is dropped."""
        self.scheduled += 1
        self.first_at = scheduled_at if self.first_at is None else self.first_at
        self.last_at = scheduled_at
        if len(self._pending) >= self.cap:
            self.dropped += 1
            return None
        token = next(self._tokens)
        self._pending[token] = scheduled_at
        self.sent += 1
        self.lags_ms.append(max(0.0, (now - scheduled_at) * 1000))
        self.peak_in_flight = max(self.peak_in_flight, len(self._pending))
        return token

    def finish(self, token: int) -> None:
        """The request of `token` was answered and reported."""
        if self._pending.pop(token, None) is not None:
            self.completed += 1

    def abandon(self, now: float) -> list[float]:
        """End of the run: the requests still unanswered, as the ms each waited since its
        scheduled start (a lower bound of its latency); they are no longer in flight."""
        waited = [(now - at) * 1000 for at in self._pending.values()]
        self.unfinished += len(waited)
        self._pending.clear()
        return waited

    def reset(self) -> None:
        """Forget the counts so far (the warm-up's); requests in flight stay in flight."""
        self.scheduled = self.sent = self.dropped = self.completed = self.unfinished = 0
        self.peak_in_flight = len(self._pending)
        self.lags_ms = []
        self.first_at = self.last_at = None

    def measured_rate(self) -> float | None:
        """Arrivals per second between the first and the last arrival (None: too few)."""
        if self.first_at is None or self.last_at is None or self.last_at <= self.first_at:
            return None
        return (self.scheduled - 1) / (self.last_at - self.first_at)


def response_time_ms(scheduled_at: float, now: float) -> float:
    """What Locust records for an open-loop request: from its scheduled start, not its send."""
    return max(0.0, (now - scheduled_at) * 1000)


def nearest_rank(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def summary(books: list[Arrivals], rate: float, kind: ArrivalKind, cap: int) -> dict[str, object]:
    """The process's open loop over all its users, as PREFIX_arrivals.json records it."""
    lags = [lag for b in books for lag in b.lags_ms]
    rates = [r for b in books if (r := b.measured_rate()) is not None]
    return {
        "arrival_rate": rate,
        # what the schedule really offered: the users' rates added up (Poisson: about `rate`)
        "measured_rate": round(sum(rates), 2) if rates else None,
        "arrivals": kind,
        "max_in_flight": cap,
        "users": len(books),
        "scheduled": sum(b.scheduled for b in books),
        "sent": sum(b.sent for b in books),
        "dropped": sum(b.dropped for b in books),
        "completed": sum(b.completed for b in books),
        "unfinished": sum(b.unfinished for b in books),
        "peak_in_flight": sum(b.peak_in_flight for b in books),
        "send_lag_p50_ms": _round(nearest_rank(lags, 0.50)),
        "send_lag_p99_ms": _round(nearest_rank(lags, 0.99)),
        "send_lag_max_ms": _round(max(lags, default=None)),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def arrivals_path(prefix: str | Path) -> Path:
    """Where a headless run with --csv PREFIX leaves its open-loop summary."""
    return Path(f"{prefix}_arrivals.json")


def write_summary(prefix: str | Path, data: dict[str, object]) -> None:
    arrivals_path(prefix).write_text(json.dumps(data, indent=1) + "\n")
