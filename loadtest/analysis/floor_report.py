"""bench-floor's numbers: one app's measured windows, a lab/floor pair with the spread of its
ratio over the rounds, the verdict, report.md."""

from __future__ import annotations

import itertools
import random
import statistics
from collections.abc import Sequence
from typing import Any, TypedDict

from loadtest.analysis.machine import Machine, one_line

BOOTSTRAP_DRAWS = 2000


class Run(TypedDict):
    """One app (the lab's variant or its floor) under one scenario's load, over its windows."""

    requests: int  # expected answers (200) completed in the measured windows
    other: dict[str, int]  # any other status or client error, by name: should be empty
    seconds: float
    rps: float
    cpu_s: float  # the server process's CPU time (user + system, children too) in the windows
    cpu_ms_per_request: float | None
    p50_ms: float | None
    p99_ms: float | None
    round_requests: list[int]  # the same requests and CPU, window by window (one per round)
    round_cpu_s: list[float]
    # The other app's CPU while this one was measured, as a share of one core: its gate was
    # closed, so this should be about 0; a large share means the two competed for the cores.
    others_core_share: float
    late_starts: int  # windows that began before the other app went quiet (the wait's bound)
    undrained: int  # requests still unanswered when the scenario's final drain gave up


class Pair(TypedDict):
    variant: str
    scenario: str
    lab: Run
    floor: Run
    ratio: float | None  # lab / floor CPU per request, over every round
    round_ratios: list[float | None]  # the same, round by round: how much it moves
    starts: list[int]  # rounds per start (fresh processes), in the order of the rounds
    start_ratios: list[float | None]  # the ratio of each start's rounds
    interval: list[float] | None  # bootstrap 90% interval of `ratio`: starts, then rounds
    ok: bool


def run_numbers(round_requests: Sequence[int], round_cpu_s: Sequence[float],
                other: dict[str, int], seconds: float, latencies_s: Sequence[float], *,
                others_cpu_s: float = 0.0, late_starts: int = 0,
                undrained: int = 0) -> Run:  # fmt: skip
    ordered = sorted(latencies_s)
    requests, cpu_s = sum(round_requests), sum(round_cpu_s)

    def pct(q: float) -> float | None:
        if not ordered:
            return None
        return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)

    return {
        "requests": requests,
        "other": dict(other),
        "seconds": round(seconds, 3),
        "rps": round(requests / seconds, 1) if seconds > 0 else 0.0,
        "cpu_s": round(cpu_s, 4),
        "cpu_ms_per_request": round(1000 * cpu_s / requests, 4) if requests else None,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "round_requests": list(round_requests),
        "round_cpu_s": [round(c, 5) for c in round_cpu_s],
        "others_core_share": round(others_cpu_s / seconds, 4) if seconds > 0 else 0.0,
        "late_starts": late_starts,
        "undrained": undrained,
    }


def _ratio_of(lab_cpu: float, lab_n: int, floor_cpu: float, floor_n: int) -> float | None:
    if not lab_n or not floor_n or not floor_cpu:
        return None
    return (lab_cpu / lab_n) / (floor_cpu / floor_n)


Round = tuple[float, int, float, int]  # lab CPU s, lab requests, floor CPU s, floor requests


def _groups(lab: Run, floor: Run, starts: Sequence[int]) -> list[list[Round]]:
    """The rounds (the lab's window and the floor's next to it), grouped by start."""
    rounds = list(zip(lab["round_cpu_s"], lab["round_requests"], floor["round_cpu_s"],
                      floor["round_requests"], strict=True))  # fmt: skip
    if sum(starts) != len(rounds):
        raise ValueError(f"{len(rounds)} rounds, but starts say {sum(starts)}")
    edges = [sum(starts[:i]) for i in range(len(starts) + 1)]
    return [rounds[a:b] for a, b in itertools.pairwise(edges)]


def _total_ratio(rounds: Sequence[Round]) -> float | None:
    return _ratio_of(sum(r[0] for r in rounds), sum(r[1] for r in rounds),
                     sum(r[2] for r in rounds), sum(r[3] for r in rounds))  # fmt: skip


def bootstrap_interval(
    lab: Run,
    floor: Run,
    starts: Sequence[int] | None = None,
    draws: int = BOOTSTRAP_DRAWS,
    seed: int = 0,
) -> list[float] | None:
    """5th and 95th percentile of the total ratio over `draws` resamplings with replacement,
    in two stages as the data came: the starts (fresh processes, each with its own luck),
    then the rounds within each start drawn. With one start, simply the rounds. Seeded: the
    same run always reports the same interval."""
    groups = _groups(lab, floor, starts or [len(lab["round_requests"])])
    groups = [g for g in groups if g]
    if not groups:
        return None
    rng = random.Random(seed)
    ratios = []
    for _ in range(draws):
        sample = [r for g in rng.choices(groups, k=len(groups)) for r in rng.choices(g, k=len(g))]
        ratio = _total_ratio(sample)
        if ratio is not None:
            ratios.append(ratio)
    if len(ratios) < draws // 2:  # most resamplings had no requests on one side
        return None
    ratios.sort()
    return [
        round(ratios[int(0.05 * len(ratios))], 3),
        round(ratios[int(0.95 * len(ratios)) - 1], 3),
    ]


def pair(variant: str, scenario: str, lab: Run, floor: Run, max_ratio: float,
         starts: Sequence[int] | None = None) -> Pair:  # fmt: skip
    """A ratio only when both runs served requests and no other answers: otherwise not ok.
    `starts`: rounds per start, in order (None: one start)."""
    starts = list(starts or [len(lab["round_requests"])])
    groups = _groups(lab, floor, starts)
    # from the totals, as the interval is (not from the rounded CPU ms per request)
    every = [r for g in groups for r in g]
    ratio = None if lab["other"] or floor["other"] else _rounded(_total_ratio(every))
    round_ratios = [_rounded(_ratio_of(*x)) for x in every]
    start_ratios = [_rounded(_total_ratio(g)) for g in groups]
    ok = ratio is not None and ratio <= max_ratio
    return {"variant": variant, "scenario": scenario, "lab": lab, "floor": floor,
            "ratio": ratio, "round_ratios": round_ratios, "starts": starts,
            "start_ratios": start_ratios,
            "interval": bootstrap_interval(lab, floor, starts) if ratio is not None else None,
            "ok": ok}  # fmt: skip


def table(pairs: Sequence[Pair]) -> str:
    rows = [
        "| variant | scenario | lab req/s | floor req/s | lab CPU ms/req | floor CPU ms/req "
        "| lab/floor CPU | 90% interval | per start | lab p99 ms | floor p99 ms | |",
        "|---|---|---:|---:|---:|---:|---:|---|---|---:|---:|---|",
    ]
    for p in pairs:
        lab, floor = p["lab"], p["floor"]
        mark = "ok" if p["ok"] else "**over**" if p["ratio"] is not None else "**invalid**"
        rows.append(
            f"| {p['variant']} | {p['scenario']} | {lab['rps']:.0f} | {floor['rps']:.0f} "
            f"| {_ms(lab['cpu_ms_per_request'])} | {_ms(floor['cpu_ms_per_request'])} "
            f"| {_ratio(p['ratio'])} | {_interval(p['interval'])} "
            f"| {per_start(p)} "
            f"| {_ms(lab['p99_ms'], 0)} | {_ms(floor['p99_ms'], 0)} "
            f"| {mark} |"
        )
    return "\n".join(rows)


def per_start(p: Pair) -> str:
    """The ratio of each start's rounds, in order: "1.041 1.024 1.193"."""
    return " ".join(_ratio(r) for r in p["start_ratios"])


def failures(pairs: Sequence[Pair], max_ratio: float) -> list[str]:
    """One line per pair that is over the limit or could not be measured."""
    lines = []
    for p in pairs:
        if p["ok"]:
            continue
        name = f"{p['variant']} x {p['scenario']}"
        if p["ratio"] is not None:
            lines.append(f"{name}: lab/floor CPU per request {p['ratio']:.3f} > {max_ratio:.2f}")
        else:
            lab, floor = p["lab"], p["floor"]
            other = {**lab["other"], **{f"floor {k}": v for k, v in floor["other"].items()}}
            lines.append(
                f"{name}: no valid ratio (requests: lab {lab['requests']}, floor "
                f"{floor['requests']}; other answers: {other or 'none'})"
            )
    return lines


def summary(pairs: Sequence[Pair]) -> dict[str, float]:
    """Median ratio per scenario, for one line under the table."""
    by: dict[str, list[float]] = {}
    for p in pairs:
        if p["ratio"] is not None:
            by.setdefault(p["scenario"], []).append(p["ratio"])
    return {s: round(statistics.median(r), 3) for s, r in by.items()}


def gates(pairs: Sequence[Pair]) -> str:
    """Whether the gates kept the apps apart: what the idle app used during the other's windows,
    windows that began while it was still busy, requests a scenario's end left unanswered."""
    runs = [(f"{p['variant']} x {p['scenario']} {side}", p[side])
            for p in pairs for side in ("lab", "floor")]  # fmt: skip
    if not runs:
        return "No windows measured."
    name, busiest = max(runs, key=lambda r: r[1]["others_core_share"])
    text = (
        f"While one app was measured the other used at most "
        f"{100 * busiest['others_core_share']:.1f}% of a core ({name}'s windows)."
    )
    late = [f"{n} {r['late_starts']}" for n, r in runs if r["late_starts"]]
    if late:
        text += " Windows that began before the other app went quiet: " + ", ".join(late) + "."
    left = [f"{n} {r['undrained']}" for n, r in runs if r["undrained"]]
    if left:
        text += " Requests still unanswered at a scenario's end: " + ", ".join(left) + "."
    return text


def report_md(data: dict[str, Any], machine: Machine, versions: dict[str, str]) -> str:
    pairs: list[Pair] = data["pairs"]
    mline, vline = one_line(machine, versions)
    o = data["options"]
    bad = failures(pairs, data["max_ratio"])
    verdict = (
        f"**every ratio <= {data['max_ratio']:.2f}**"
        if not bad
        else "**over the limit**:\n\n" + "\n".join(f"- {line}" for line in bad)
    )
    medians = ", ".join(f"{s} {r:.2f}" for s, r in summary(pairs).items())
    return "\n".join(
        [
            "# bench-floor: the lab's variants against the stack's own floor",
            "",
            f"Started {data['started']}, wall time {data['wall_s']:.0f} s. {mline}; {vline}. "
            f"Load average at start: {machine['load_avg_1m_at_start']}.",
            "",
            f"Command: `{data['command']}`",
            "",
            "The machine's speed drifts (other tenants of its cores come and go: 10-20% within "
            "seconds to minutes), so the two apps are not measured one after the other but in "
            "short slices that alternate: one client holds "
            f"{o['users']} keep-alive connections to each app at once (closed loop) and lets only "
            f"one app's connections send at a time. Per scenario each app is first loaded alone "
            f"for {o['initial_warmup_s']:g} s (not counted); then, in each of {o['rounds']} "
            f"rounds, each app's gate opens, {o['warmup_s']:g} s to settle, {o['duration_s']:g} "
            "s measured, gate closed, in the order lab, floor, floor, lab, ... (the next start "
            "begins with the floor) so that a drift favours neither. A window starts only once "
            "the other app has answered all its requests or uses under "
            f"{100 * o['quiet_core_share']:g}% of a core (at most {o['drain_s']:g} s). Upstream "
            f"and db calls wait {o['delay_ms']} ms. CPU is the server process's own (user + "
            "system, children included) over each window, divided by the requests completed in "
            "it; the ratio is lab / floor of the totals over all rounds, and the verdict reads "
            f"it. The rounds are split over {o.get('starts', 1)} start(s): each time, the "
            "variant's lab API and its floor app are started afresh, every variant in turn, "
            "since a process keeps its own luck (its memory layout, its hash seed, where the "
            "scheduler puts its threads) for its whole life: two fresh pairs of the same code "
            "can read several per cent apart (column *per start*). The 90% interval is the "
            "5th-95th percentile of the ratio recomputed over "
            f"{BOOTSTRAP_DRAWS:,} resamplings with replacement, of the starts and then of the "
            "rounds within each (a two-stage bootstrap): how far it would move with other "
            "starts and rounds like these. It is conservative (the rounds' own noise counts "
            "in both stages) and, with few starts, rough. req/s depends on the "
            "client and on whoever else uses the cores, CPU per request much less.",
            "",
            table(pairs),
            "",
            f"Median ratio per scenario: {medians or 'none'}.",
            "",
            gates(pairs),
            "",
            f"Verdict (limit {data['max_ratio']:.2f}): {verdict}",
            "",
        ]
    )


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _ms(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _interval(value: Sequence[float] | None) -> str:
    return "-" if not value else f"{value[0]:.3f}-{value[1]:.3f}"
