"""Draw PNG charts of compare and capacity results (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import matplotlib

matplotlib.use("Agg")  # before pyplot: files only, never a window

import matplotlib.pyplot as plt

from loadtest.analysis.modes import is_open, level, load_text, run_label
from loadtest.analysis.records import RunRecord, SearchRecord
from services.registry import VARIANTS

Percentile = Literal["p50_ms", "p95_ms", "p99_ms"]
PERCENTILES: tuple[tuple[Percentile, str], ...] = (
    ("p50_ms", "p50"),
    ("p95_ms", "p95"),
    ("p99_ms", "p99"),
)


def colour(variant: str) -> str:
    """The variant's colour in every chart (services/registry.py); gray for unknown names."""
    v = VARIANTS.get(variant)
    return v.colour if v else "gray"


def _spaced_labels(ticks: Sequence[float], min_ratio: float = 1.45) -> list[str]:
    """A label for each tick of a log axis, blank where it would touch a label already placed;
    rounder numbers are placed first (1000 rather than 1050)."""

    def roundness(t: float) -> tuple[int, float]:
        return len(f"{t:g}".rstrip("0").replace(".", "")), t

    placed: list[float] = []
    for t in sorted(ticks, key=roundness):
        if all(max(t, p) / min(t, p) >= min_ratio for p in placed):
            placed.append(t)
    return [f"{t:g}" if t in placed else "" for t in ticks]


def _log_if_wide(ax: Any, values: Sequence[float | None]) -> None:
    """Log scale when values span more than 30x: 20 ms next to 20 s stays readable."""
    present = [v for v in values if v]
    if present and max(present) / min(present) > 30:
        ax.set_yscale("log")


def scenario_bars(scenario: str, runs: list[RunRecord], path: Path) -> Path:
    """Left: req/s per variant with the Little's-law ceiling; right: p50/p95/p99 per variant."""
    paired = len({is_open(r) for r in runs}) > 1  # closed and open runs side by side
    variants = [r["variant"] for r in runs]
    labels = [run_label(r, paired) for r in runs]
    fig, (ax_rps, ax_lat) = plt.subplots(1, 2, figsize=(11, 4.2))
    xs = range(len(runs))
    rps = [r["stats"]["rps"] or 0 for r in runs]
    ax_rps.bar(xs, rps, color=[colour(v) for v in variants])
    for x, run in zip(xs, runs, strict=True):
        ceil = run["ceiling"]["rps"]
        if ceil:
            ax_rps.hlines(ceil, x - 0.4, x + 0.4, colors="black", linestyles="dashed")
    ax_rps.plot([], [], "k--", label="Little's-law ceiling")
    ax_rps.legend(loc="upper right", fontsize=8)
    ax_rps.set_xticks(list(xs), labels)
    ax_rps.set_ylabel("req/s")
    ax_rps.set_title("throughput")
    _log_if_wide(ax_rps, rps + [r["ceiling"]["rps"] for r in runs])
    width = 0.2
    values: list[float | None] = []
    for i, (key, label) in enumerate(PERCENTILES):
        ys = [r["stats"][key] or 0 for r in runs]
        values += ys
        ax_lat.bar([x + (i - 1.5) * width for x in xs], ys, width, label=label)
    # The bystander (GET /healthz while loaded): what every other request feels.
    bystander = [r["bystander"]["p99_ms"] for r in runs]
    if any(b is not None for b in bystander):
        values += bystander
        ax_lat.bar(
            [x + 1.5 * width for x in xs],
            [b or 0 for b in bystander],
            width,
            label="bystander p99",
            color="white",
            edgecolor="black",
            hatch="///",
        )
    ax_lat.set_xticks(list(xs), labels)
    ax_lat.set_ylabel("ms")
    ax_lat.set_title("latency percentiles (load) and bystander /healthz p99")
    ax_lat.legend(fontsize=8)
    _log_if_wide(ax_lat, values)
    how = "closed and open loop" if paired else load_text(runs[0])
    return _save(fig, f"{scenario}: {how}, {runs[0]['duration_s']} s", path)


def scenario_over_time(scenario: str, runs: list[RunRecord], path: Path) -> Path:
    """p95 (solid) and p50 (dotted) over the run, from Locust's _stats_history.csv (its
    percentiles cover the last ~10 s); the bystander's every probe (dashed) when there are
    any; req/s over the run."""
    with_bystander = any(r["bystander_samples"] for r in runs)
    panels = 3 if with_bystander else 2
    fig, axes = plt.subplots(panels, 1, figsize=(10, 3.2 * panels + 0.5), sharex=True)
    ax_lat, ax_rps = axes[0], axes[-1]
    values: list[float | None] = []
    paired = len({is_open(r) for r in runs}) > 1
    for run in runs:
        rows = [h for h in run["history"] if h["p95_ms"] is not None]
        color = colour(run["variant"])
        dashes = "--" if paired and is_open(run) else "-"  # a pair's open run: dashed
        ts = [h["t"] for h in rows]
        label = f"{run_label(run, paired)} p95"
        ax_lat.plot(ts, [h["p95_ms"] for h in rows], color=color, linestyle=dashes, label=label)
        ax_lat.plot(ts, [h["p50_ms"] for h in rows], color=color, linestyle=":")
        values += [h["p95_ms"] for h in rows]
        every = [h for h in run["history"] if h["rps"] is not None]
        ax_rps.plot(
            [h["t"] for h in every], [h["rps"] for h in every], color=color, linestyle=dashes
        )
    ax_lat.set_ylabel("ms (p95 solid, p50 dotted)")
    ax_lat.set_title("latency over time (Locust's last ~10 s)")
    ax_lat.legend(fontsize=8, ncols=4)
    _log_if_wide(ax_lat, values)
    if with_bystander:
        _bystander_over_time(axes[1], runs)
    ax_rps.set_ylabel("req/s")
    ax_rps.set_xlabel("seconds since the run started")
    _shade_warmup(axes, max(r["warmup_s"] for r in runs))
    return _save(fig, f"{scenario}: latency and throughput over the run (warm-up included)", path)


def _shade_warmup(axes: Any, warmup_s: float) -> None:
    """The warm-up in grey on every panel. Locust resets its statistics when it ends, so its
    req/s (a rolling window) drops and climbs back in the seconds after: the reset, not the
    server."""
    if warmup_s <= 0:
        return
    for ax in axes:
        ax.axvspan(0, warmup_s, color="0.92", zorder=0)
    axes[-1].text(
        warmup_s / 2, 0.97, "warm-up: not counted;\nstats reset at its end", fontsize=7,
        ha="center", va="top", transform=axes[-1].get_xaxis_transform(), color="0.35",
    )  # fmt: skip


def _bystander_over_time(ax: Any, runs: list[RunRecord]) -> None:
    """Every bystander probe's latency, on the history's clock (its first row is 0 s)."""
    values: list[float | None] = []
    for run in runs:
        first = run["history"][0].get("wall") if run["history"] else None
        probes = [p for p in run["bystander_samples"] if p["latency_ms"] is not None]
        if not probes:
            continue
        t0 = first if first is not None else probes[0]["wall"]
        ys = [p["latency_ms"] for p in probes]
        ax.plot(
            [p["wall"] - t0 for p in probes],
            ys,
            color=colour(run["variant"]),
            linestyle="--",
            linewidth=1,
            marker=".",
            label=f"{run_label(run, is_open(run))} (p99 {_ms(run['bystander']['p99_ms'])} ms)",
        )
        values += ys
    ax.set_ylabel("ms (each probe, when sent)")
    ax.set_title("bystander: GET /healthz every 0.2 s on the loaded target (warm-up included)")
    ax.legend(fontsize=8, ncols=4)
    _log_if_wide(ax, values)


def _ms(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.1f}" if value < 10 else f"{value:.0f}"


def capacity_chart(scenario: str, searches: list[SearchRecord], slo_ms: float, path: Path) -> Path:
    """req/s and p95 against users (open loop: arrival rate), one line per variant; the SLO as
    a line, knees circled; the bystander's p99 per step dashed beside the load's p95."""
    fig, (ax_rps, ax_lat) = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
    values: list[float | None] = [slo_ms]
    has_bystander = False
    for search in searches:
        color = colour(search["variant"])
        steps = search["steps"]
        users = [level(s) for s in steps]
        ax_rps.plot(
            users,
            [s["stats"]["rps"] or 0 for s in steps],
            "o-",
            color=color,
            label=search["variant"],
        )
        p95 = [s["stats"]["p95_ms"] for s in steps]
        ax_lat.plot(users, [p or float("nan") for p in p95], "o-", color=color)
        values += p95
        bystander = [s["bystander"]["p99_ms"] for s in steps]
        if any(b is not None for b in bystander):
            ax_lat.plot(
                users, [b or float("nan") for b in bystander], "x--", color=color, alpha=0.8
            )
            values += bystander
            has_bystander = True
        knee = search["knee_rate"] if search.get("mode") == "open" else search["knee_users"]
        if knee:
            ax_rps.plot(knee, search["max_rps"], "o", ms=14, mfc="none", mec=color)
    ax_lat.axhline(slo_ms, color="black", linestyle="dashed", label=f"SLO p95 {slo_ms:g} ms")
    ax_rps.set_ylabel("req/s")
    ax_rps.legend(fontsize=8, title="circled: knee", title_fontsize=8)
    if has_bystander:
        ax_lat.plot([], [], "kx--", label="bystander /healthz p99")
    ax_lat.set_ylabel("p95 ms (bystander p99 dashed)" if has_bystander else "p95 ms")
    ax_lat.legend(fontsize=8)
    _log_if_wide(ax_lat, values)
    ax_lat.set_xscale("log")
    # the steps' own levels as ticks, not 2x10^0; labelled only where they do not run into the
    # last label (refined rates such as 700, 750, 800 sit close together on a log axis)
    ticks = sorted({level(s) for search in searches for s in search["steps"]})
    ax_lat.set_xticks(ticks, _spaced_labels(ticks))
    ax_lat.minorticks_off()
    open_loop = any(search.get("mode") == "open" for search in searches)
    ax_lat.set_xlabel(f"{'arrival rate, req/s' if open_loop else 'users'} (log scale)")
    return _save(fig, f"capacity: {scenario}", path)


def _save(fig: Any, title: str, path: Path) -> Path:
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
