"""A drill's per-request outcomes -> per-second timeline, fault/outside errors, recovery, the
longest response and the durability counts; and the rules a variant must keep. Pure logic."""

from __future__ import annotations

import csv
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Request:
    """One row of PREFIX_requests.csv (generator/drill_locust.py). status 0: no HTTP answer."""

    start: float  # epoch s
    end: float
    name: str
    status: int
    response_ms: float
    order_id: int | None = None
    note: str = ""
    error: str = ""

    @property
    def failed(self) -> bool:
        return not 200 <= self.status < 400

    @property
    def code(self) -> str:
        """The status as a chart/report label: "200", "503", or "conn" (no HTTP answer)."""
        return str(self.status) if self.status else "conn"


def read_requests(path: Path) -> list[Request]:
    rows: list[Request] = []
    if not path.exists():
        return rows
    with path.open(newline="") as file:
        for row in csv.DictReader(file):
            rows.append(
                Request(
                    start=float(row["start"]),
                    end=float(row["end"]),
                    name=row["name"],
                    status=int(row["status"] or 0),
                    response_ms=float(row["response_ms"]),
                    order_id=int(row["order_id"]) if row["order_id"] else None,
                    note=row["note"],
                    error=row["error"],
                )
            )
    return rows


@dataclass(frozen=True)
class Window:
    """The fault from `start` to `end` (epoch s); errors up to `allowance_s` after its end
    still belong to it (requests that were waiting on a timeout when it ended)."""

    start: float
    end: float
    allowance_s: float

    def touches(self, r: Request) -> bool:
        return r.start <= self.end + self.allowance_s and r.end >= self.start


@dataclass
class Second:
    """One second of the timeline, by completion time."""

    t: int  # seconds since the first request started
    codes: dict[str, int] = field(default_factory=dict)
    p50_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def timeline(requests: Sequence[Request], t0: float) -> list[Second]:
    """Per second since `t0`, by completion: responses by code, p50/p99/max latency."""
    by_second: dict[int, list[Request]] = defaultdict(list)
    for r in requests:
        by_second[int(r.end - t0)].append(r)
    if not by_second:
        return []
    seconds = []
    for t in range(min(by_second), max(by_second) + 1):
        rows = by_second.get(t, [])
        times = [r.response_ms for r in rows]
        seconds.append(
            Second(
                t=t,
                codes=dict(Counter(r.code for r in rows)),
                p50_ms=percentile(times, 50) if times else None,
                p99_ms=percentile(times, 99) if times else None,
                max_ms=max(times) if times else None,
            )
        )
    return seconds


def recovery_s(
    seconds: Sequence[Second], fault_end_t: float, normal_p99_ms: float, factor: float = 3.0
) -> float | None:
    """Seconds from the fault's end to the first whole second with answers, no
    error and p99 within `factor` x the pre-fault p99: None if that never happens."""
    limit = max(normal_p99_ms * factor, normal_p99_ms + 50)
    for s in seconds:
        if s.t < fault_end_t:
            continue
        ok = set(s.codes) <= {"200", "201"} and s.codes and (s.p99_ms or 0) <= limit
        if ok:
            return round(max(0.0, s.t - fault_end_t), 1)
    return None


@dataclass
class Durability:
    """Acknowledged orders (201 with an id) against the rows the run's notes found."""

    acknowledged: int
    present: int  # acknowledged ids found, with the note the request carried
    missing: list[int]  # acknowledged, not in the table
    duplicates: list[str]  # notes with more than one row, acknowledged ids seen twice
    extra_definite: list[str]  # rows whose request got a definite error (4xx, 502, 503)
    extra_unknown: list[str]  # rows whose request's outcome was unknown (no answer, 500, 504)
    rows: int

    @property
    def ok(self) -> bool:
        return not (self.missing or self.duplicates or self.extra_definite)

    def counts(self) -> dict[str, int]:
        return {
            "acknowledged": self.acknowledged,
            "present": self.present,
            "missing": len(self.missing),
            "duplicates": len(self.duplicates),
            "extra_definite": len(self.extra_definite),
            "extra_unknown": len(self.extra_unknown),
            "rows": self.rows,
        }


def definite(status: int) -> bool:
    """A failure that says the write did not happen: a 4xx (rejected), 502 or 503 (not
    attempted, or cancelled by the database). No answer, a 500 (say a connection lost during
    the commit) or a 504 leave the outcome unknown: the row may exist."""
    return 400 <= status < 500 or status in (502, 503)


def durability(requests: Iterable[Request], rows: Sequence[tuple[int, str]]) -> Durability:
    """`rows` are (id, note) of the run's orders in the database."""
    writes = [r for r in requests if r.note]
    acked = [r for r in writes if r.status == 201 and r.order_id is not None]
    by_note: dict[str, list[int]] = defaultdict(list)
    for order_id, note in rows:
        by_note[note].append(order_id)
    present = [r for r in acked if r.order_id in by_note.get(r.note, [])]
    ids = Counter(r.order_id for r in acked)
    duplicates = [n for n, got in by_note.items() if len(got) > 1]
    duplicates += [f"id {i} acknowledged {c}x" for i, c in ids.items() if c > 1]
    outcome = {r.note: r for r in writes}
    known = {r.note for r in acked}
    extra = [n for n in by_note if n not in known]
    return Durability(
        acknowledged=len(acked),
        present=len(present),
        missing=[r.order_id for r in acked if r.order_id not in by_note.get(r.note, [])],  # type: ignore[misc]
        duplicates=duplicates,
        extra_definite=[n for n in extra if n in outcome and definite(outcome[n].status)],
        extra_unknown=[n for n in extra if n not in outcome or not definite(outcome[n].status)],
        rows=len(rows),
    )


@dataclass
class Verdict:
    variant: str
    fault_errors: int
    fault_codes: dict[str, int]
    outside_errors: int
    outside_codes: dict[str, int]
    untouched_fault_errors: int  # errors of requests the fault should not reach, in the window
    recovery_s: float | None
    longest_ms: float
    longest_bound_ms: float | None  # None: no bound applies (an overload without shedding)
    requests: int
    extra: dict[str, Any] = field(default_factory=dict)
    durability: dict[str, int] | None = None
    broken: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def judge(
    variant: str,
    requests: Sequence[Request],
    window: Window,
    longest_bound_ms: float,
    touched: Iterable[str] | None,
    normal_p99_ms: float,
    recovery_limit_s: float,
) -> Verdict:
    """The rules every drill shares: 0 errors outside the window (+ allowance), none on
    requests the fault does not touch (`touched` None: it may touch all), recovery within
    `recovery_limit_s`, no response longer than the bound."""
    touched_names = None if touched is None else set(touched)
    in_fault = [r for r in requests if r.failed and window.touches(r)]
    outside = [r for r in requests if r.failed and not window.touches(r)]
    bystanders = [r for r in in_fault if touched_names is not None and r.name not in touched_names]
    t0 = min((r.start for r in requests), default=window.start)
    rec = recovery_s(timeline(requests, t0), window.end - t0, normal_p99_ms)
    longest = max((r.response_ms for r in requests), default=0.0)
    v = Verdict(
        variant=variant,
        fault_errors=len(in_fault),
        fault_codes=dict(Counter(r.code for r in in_fault)),
        outside_errors=len(outside),
        outside_codes=dict(Counter(r.code for r in outside)),
        untouched_fault_errors=len(bystanders),
        recovery_s=rec,
        longest_ms=round(longest, 1),
        longest_bound_ms=round(longest_bound_ms, 1) if math.isfinite(longest_bound_ms) else None,
        requests=len(requests),
    )
    if not requests:
        v.broken.append("no requests recorded")
    if outside:
        v.broken.append(f"{len(outside)} errors outside the fault window {v.outside_codes}")
    if bystanders:
        names = sorted({r.name for r in bystanders})
        v.broken.append(f"{len(bystanders)} errors on requests the fault does not touch {names}")
    if rec is None:
        v.broken.append("never recovered after the fault")
    elif rec > recovery_limit_s:
        v.broken.append(f"recovered after {rec} s > {recovery_limit_s} s")
    if longest > longest_bound_ms:
        v.broken.append(f"longest response {longest:.0f} ms > bound {longest_bound_ms:.0f} ms")
    return v


def normal_p99(requests: Sequence[Request], before: float, skip_s: float = 2.0) -> float:
    """p99 of the successful requests that ended before `before`, the first `skip_s` (ramp-up)
    left out: the 'normal latency' recovery is measured against."""
    t0 = min((r.start for r in requests), default=before)
    times = [r.response_ms for r in requests if not r.failed and t0 + skip_s <= r.end < before]
    return percentile(times, 99) if times else 1000.0


def admitted_p99(requests: Sequence[Request], start: float, end: float) -> dict[str, Any]:
    """During [start, end): the p99 of the requests answered other than 503 (admitted), and
    how many were shed (503)."""
    during = [r for r in requests if start <= r.end < end]
    admitted = [r.response_ms for r in during if r.status not in (503, 0)]
    return {
        "requests": len(during),
        "shed_503": sum(r.status == 503 for r in during),
        "no_answer": sum(r.status == 0 for r in during),
        "admitted": len(admitted),
        "admitted_p50_ms": round(percentile(admitted, 50), 1) if admitted else None,
        "admitted_p99_ms": round(percentile(admitted, 99), 1) if admitted else None,
        "throughput_rps": round(len(admitted) / max(end - start, 1e-9), 1),
    }


def codes_by_name(requests: Iterable[Request]) -> Mapping[str, dict[str, int]]:
    out: dict[str, Counter[str]] = defaultdict(Counter)
    for r in requests:
        out[r.name][r.code] += 1
    return {name: dict(c) for name, c in out.items()}
