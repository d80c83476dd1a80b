"""bench-floor's numbers: one app's measured windows, a lab/floor pair with the spread of its
ratio over the rounds, the verdict, report.md."""

from __future__ import annotations

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
    interval: list[float] | None  # bootstrap 90% interval of `ratio` over the rounds
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


def bootstrap_interval(lab: Run, floor: Run, draws: int = BOOTSTRAP_DRAWS,
                       seed: int = 0) -> list[float] | None:  # fmt: skip
    """5th and 95th percentile of the total ratio over `draws` resamplings of the rounds (a
    round: the lab's window and the floor's next to it), with replacement. Seeded: the same
    run always reports the same interval."""
    rounds = list(zip(lab["round_cpu_s"], lab["round_requests"], floor["round_cpu_s"],
                      floor["round_requests"], strict=True))  # fmt: skip
    if not rounds:
        return None
    rng = random.Random(seed)
    ratios = []
    for _ in range(draws):
        sample = rng.choices(rounds, k=len(rounds))
        ratio = _ratio_of(sum(r[0] for r in sample), sum(r[1] for r in sample),
                          sum(r[2] for r in sample), sum(r[3] for r in sample))  # fmt: skip
        if ratio is not None:
            ratios.append(ratio)
    if len(ratios) < draws // 2:  # most resamplings had no requests on one side
        return None
    ratios.sort()
    return [
        round(ratios[int(0.05 * len(ratios))], 3),
        round(ratios[int(0.95 * len(ratios)) - 1], 3),
    ]


def pair(variant: str, scenario: str, lab: Run, floor: Run, max_ratio: float) -> Pair:
    """A ratio only when both runs served requests and no other answers: otherwise not ok."""
    ratio = None
    lab_cpu, floor_cpu = lab["cpu_ms_per_request"], floor["cpu_ms_per_request"]
    if lab_cpu is not None and floor_cpu and not lab["other"] and not floor["other"]:
        ratio = round(lab_cpu / floor_cpu, 3)
    rounds = zip(lab["round_cpu_s"], lab["round_requests"], floor["round_cpu_s"],
                 floor["round_requests"], strict=True)  # fmt: skip
    round_ratios = [None if (r := _ratio_of(*x)) is None else round(r, 3) for x in rounds]
    ok = ratio is not None and ratio <= max_ratio
    return {"variant": variant, "scenario": scenario, "lab": lab, "floor": floor,
            "ratio": ratio, "round_ratios": round_ratios,
            "interval": bootstrap_interval(lab, floor) if ratio is not None else None,
            "ok": ok}  # fmt: skip


def table(pairs: Sequence[Pair]) -> str:
    rows = [
        "| variant | scenario | lab req/s | floor req/s | lab CPU ms/req | floor CPU ms/req "
        "| lab/floor CPU | 90% interval | lab p99 ms | floor p99 ms | |",
        "|---|---|---:|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    for p in pairs:
        lab, floor = p["lab"], p["floor"]
        mark = "ok" if p["ok"] else "**over**" if p["ratio"] is not None else "**invalid**"
        rows.append(
            f"| {p['variant']} | {p['scenario']} | {lab['rps']:.0f} | {floor['rps']:.0f} "
            f"| {_ms(lab['cpu_ms_per_request'])} | {_ms(floor['cpu_ms_per_request'])} "
            f"| {_ratio(p['ratio'])} | {_interval(p['interval'])} "
            f"| {_ms(lab['p99_ms'], 0)} | {_ms(floor['p99_ms'], 0)} "
            f"| {mark} |"
        )
    return "\n".join(rows)


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
            "s measured, gate closed, in the order lab, floor, floor, lab, ... so that a drift "
            "favours neither. A window starts only once the other app has answered all its "
            "requests or uses under "
            f"{100 * o['quiet_core_share']:g}% of a core (at most {o['drain_s']:g} s). Upstream "
            f"and db calls wait {o['delay_ms']} ms. CPU is the server process's own (user + "
            "system, children included) over each window, divided by the requests completed in "
            "it; the ratio is lab / floor of the totals over all rounds, and the verdict reads "
            "it. The 90% interval is the 5th-95th percentile of that ratio recomputed over "
            f"{BOOTSTRAP_DRAWS:,} resamplings of the rounds with replacement (a bootstrap): how "
            "far it would move with other rounds like these. It does not cover the drift between "
            "runs: on the 2-core reference VM one run's ratio moved by up to 0.08 from the next "
            "on /items, so rerun before reading a ratio just over the limit. req/s depends on "
            "the client and on whoever else uses the cores, CPU per request much less.",
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


def _ms(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _interval(value: Sequence[float] | None) -> str:
    return "-" if not value else f"{value[0]:.3f}-{value[1]:.3f}"
