"""bench-floor's numbers: one measured run, a lab/floor pair, the verdict, report.md."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any, TypedDict

from loadtest.analysis.machine import Machine, one_line


class Run(TypedDict):
    """One app (the lab's variant or its floor) under one scenario's load."""

    requests: int  # expected answers (200) completed in the measured window
    other: dict[str, int]  # any other status or client error, by name: should be empty
    seconds: float
    rps: float
    cpu_s: float  # the server process's CPU time (user + system, children too) in the window
    cpu_ms_per_request: float | None
    p50_ms: float | None
    p99_ms: float | None


class Pair(TypedDict):
    variant: str
    scenario: str
    lab: Run
    floor: Run
    ratio: float | None  # lab / floor CPU per request, over every round
    round_ratios: list[float | None]  # the same, round by round: how much it moves
    ok: bool


def run_numbers(requests: int, other: dict[str, int], seconds: float, cpu_s: float,
                latencies_s: Sequence[float]) -> Run:  # fmt: skip
    ordered = sorted(latencies_s)

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
    }


def pair(variant: str, scenario: str, lab: Run, floor: Run, max_ratio: float,
         round_ratios: Sequence[float | None] = ()) -> Pair:  # fmt: skip
    """A ratio only when both runs served requests and no other answers: otherwise not ok."""
    ratio = None
    lab_cpu, floor_cpu = lab["cpu_ms_per_request"], floor["cpu_ms_per_request"]
    if lab_cpu is not None and floor_cpu and not lab["other"] and not floor["other"]:
        ratio = round(lab_cpu / floor_cpu, 3)
    ok = ratio is not None and ratio <= max_ratio
    return {"variant": variant, "scenario": scenario, "lab": lab, "floor": floor,
            "ratio": ratio, "round_ratios": list(round_ratios), "ok": ok}  # fmt: skip


def table(pairs: Sequence[Pair]) -> str:
    rows = [
        "| variant | scenario | lab req/s | floor req/s | lab CPU ms/req | floor CPU ms/req "
        "| lab/floor CPU | by round | lab p99 ms | floor p99 ms | |",
        "|---|---|---:|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    for p in pairs:
        lab, floor = p["lab"], p["floor"]
        mark = "ok" if p["ok"] else "**over**" if p["ratio"] is not None else "**invalid**"
        rows.append(
            f"| {p['variant']} | {p['scenario']} | {lab['rps']:.0f} | {floor['rps']:.0f} "
            f"| {_ms(lab['cpu_ms_per_request'])} | {_ms(floor['cpu_ms_per_request'])} "
            f"| {_ratio(p['ratio'])} | {' '.join(_ratio(r) for r in p['round_ratios'])} "
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
            f"Each app in turn: {o['users']} keep-alive connections (closed loop), "
            f"{o['warmup_s']:g} s warm-up, then {o['duration_s']:g} s measured, {o['rounds']} "
            "round(s) per app and scenario in the order lab, floor, floor, lab, ...; upstream and "
            f"db calls wait {o['delay_ms']} ms. CPU is the server process's own (user + system, "
            "children included) over the measured window, divided by the requests completed in "
            "it, added up over the rounds. The ratio is lab / floor CPU per request; req/s "
            "depends on the client and on whoever else uses the 2 cores, CPU per request much "
            "less.",
            "",
            table(pairs),
            "",
            f"Median ratio per scenario: {medians or 'none'}.",
            "",
            f"Verdict (limit {data['max_ratio']:.2f}): {verdict}",
            "",
        ]
    )


def _ms(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
