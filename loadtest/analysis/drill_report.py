"""A drill's outputs: the timeline chart of one variant (PNG) and report.md for all of them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot: files only, never a window

import matplotlib.pyplot as plt

from loadtest.analysis.drill_rules import Request, Window, timeline
from loadtest.analysis.records import ServerSample

CODE_COLOURS = {
    "200": "#4caf50",
    "201": "#2e7d32",
    "502": "#ff9800",
    "503": "#e53935",
    "504": "#8e24aa",
    "conn": "#212121",
}
RUNTIME_SERIES = (
    ("in_flight", "in flight"),
    ("threadpool_borrowed", "threadpool tokens"),
    ("db_in_use", "DB conns in use"),
    ("db_waiting", "DB waiters"),
    ("loop_lag_ms", "loop lag ms"),
)


def timeline_chart(
    path: Path,
    title: str,
    requests: Sequence[Request],
    server: Sequence[ServerSample],
    window: Window,
    marks: Mapping[str, float] | None = None,
) -> None:
    """Three rows sharing the time axis (seconds since the load started): responses per
    second by status, p50/p99 latency, the /runtime series (RSS on the right axis)."""
    t0 = min((r.start for r in requests), default=window.start)
    seconds = timeline(requests, t0)
    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(11, 8.5), sharex=True)
    xs = [s.t + 0.5 for s in seconds]
    bottom = [0] * len(seconds)
    codes = sorted({c for s in seconds for c in s.codes}, key=lambda c: (c == "conn", c))
    for code in codes:
        heights = [s.codes.get(code, 0) for s in seconds]
        colour = CODE_COLOURS.get(code, "#795548")
        ax1.bar(xs, heights, width=0.9, bottom=bottom, color=colour, label=code)
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    ax1.set_ylabel("responses / s")
    ax1.legend(title="status", loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    for key, label, style in (("p50_ms", "p50", "-"), ("p99_ms", "p99", "--")):
        ys = [getattr(s, key) for s in seconds]
        ax2.plot(xs, [y if y is not None else float("nan") for y in ys], style, label=label)
    ax2.set_yscale("log")
    ax2.set_ylabel("latency ms (log)")
    ax2.legend(loc="upper left", fontsize=8)
    for key, label in RUNTIME_SERIES:
        pts = [(s["wall"] - t0, s.get(key)) for s in server if s.get(key) is not None]
        if pts and any(v for _, v in pts):
            ax3.plot([p[0] for p in pts], [p[1] for p in pts], ".-", label=label)  # polls
    ax3.set_ylabel("/runtime")
    ax3.set_xlabel("seconds since the load started")
    rss = [(s["wall"] - t0, s["rss_mb"]) for s in server if s.get("rss_mb") is not None]
    if rss:
        right = ax3.twinx()
        right.plot([p[0] for p in rss], [p[1] for p in rss], ":", color="black", label="RSS MB")
        right.set_ylabel("RSS MB")
        right.legend(loc="upper right", fontsize=8)
    ax3.legend(loc="upper left", fontsize=8, ncol=3)
    for ax in (ax1, ax2, ax3):
        ax.axvspan(window.start - t0, window.end - t0, color="red", alpha=0.12)
        ax.axvspan(
            window.end - t0, window.end - t0 + window.allowance_s, color="orange", alpha=0.08
        )
        for label, wall in (marks or {}).items():
            ax.axvline(wall - t0, color="gray", linestyle=":", linewidth=1)
            if ax is ax1:
                ax.text(
                    wall - t0, ax.get_ylim()[1] * 0.95, label, fontsize=7, rotation=90, va="top"
                )
    ax1.set_title(f"{title}\nred: fault window, orange: recovery allowance", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items()) or "none"
    return str(value)


def report_md(result: Mapping[str, Any]) -> str:
    """report.md from results.json's content."""
    drill = result["drill"]
    lines = [
        f"# Drill `{drill['name']}`: {drill['what']}",
        "",
        f"Started {result['started']}, mode {result['mode']}, variants one after another "
        f"(each alone on the 2 cores, so a fault's effect is its own). Load per variant: "
        f"{drill['users']} users ({', '.join(drill['user_classes'])}), fault at "
        f"{drill['fault_at_s']} s for {drill['fault_s']} s, run {drill['run_s']} s.",
        "",
        f"Recovery allowance after the fault: {drill['allowance_s']} s ({drill['allowance_why']}). "
        f"Longest response allowed: {drill['longest_bound_ms']:.0f} ms ({drill['bound_why']}). "
        f"Recovery: first second after the fault with only 2xx and p99 within 3x the "
        f"pre-fault p99; must come within {drill['recovery_limit_s']} s.",
        "",
        "| variant | requests | errors in fault (codes) | errors outside | untouched errors "
        "| recovery s | longest ms | durability (ack/present/missing/dup/extra) | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for v in result["variants"]:
        d = v.get("durability")
        dur = (
            f"{d['acknowledged']}/{d['present']}/{d['missing']}/{d['duplicates']}/"
            f"{d['extra_definite']}+{d['extra_unknown']}?"
            if d
            else "-"
        )
        verdict = "ok" if not v["broken"] else "BROKEN: " + "; ".join(v["broken"])
        lines.append(
            f"| {v['variant']} | {v['requests']} | {v['fault_errors']} ({_cell(v['fault_codes'])})"
            f" | {v['outside_errors']} | {v['untouched_fault_errors']} | {_cell(v['recovery_s'])}"
            f" | {v['longest_ms']:.0f} | {dur} | {verdict} |"
        )
    lines += [
        "",
        "Durability: extra = rows whose request got a definite error (must be 0) + rows "
        "whose request got no answer (`?`, allowed: the client cannot know).",
        "",
    ]
    if drill["name"] == "overload":
        lines += _shedding(result["variants"])
    for v in result["variants"]:
        if v.get("extra"):
            lines += [f"## {v['variant']}", ""]
            for key, value in v["extra"].items():
                lines.append(f"- {key}: {_cell(value)}")
            lines.append("")
        lines += [f"![{v['variant']}]({v['chart']})", ""]
    lines += ["## Command", "", f"    {result['command']}", ""]
    return "\n".join(lines)


def _shedding(variants: Sequence[Mapping[str, Any]]) -> list[str]:
    """Overload: what admission control (API_LIMIT_CONCURRENCY, "-limitN" runs) does to the
    requests it admits, beside the same variant without it."""
    lines = [
        "## Shedding: the overload with and without API_LIMIT_CONCURRENCY",
        "",
        "| run | answered | shed (503) | admitted | admitted p50 ms | admitted p99 ms "
        "| admitted req/s | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for v in variants:
        d = v["extra"].get("during overload") or {}
        lines.append(
            f"| {v['variant']} | {d.get('requests')} | {d.get('shed_503')} | {d.get('admitted')} "
            f"| {d.get('admitted_p50_ms')} | {d.get('admitted_p99_ms')} "
            f"| {d.get('throughput_rps')} | {v['extra'].get('peak RSS MB')} |"
        )
    return [*lines, ""]
