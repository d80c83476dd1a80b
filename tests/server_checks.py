"""Recompute a run's server side from the samples results.json keeps, independently of
loadtest/analysis/server_side.py, and hold the run's fields and report.md's cells against it."""

from __future__ import annotations

import math
from typing import Any

import pytest

from loadtest.analysis.report import fmt_ms, fmt_pair, fmt_small_ms


def in_window(samples: list[dict[str, Any]], run: dict[str, Any]) -> list[dict[str, Any]]:
    start, end = run["stats"]["started_at"], run["stats"]["ended_at"]
    return [s for s in samples if start <= s["wall"] <= end]


def nearest_rank(values: list[float], q: float) -> float | None:
    ranked = sorted(values)
    return ranked[math.ceil(q * len(ranked)) - 1] if ranked else None


def check_run(run: dict[str, Any], server_cells: list[str] | None) -> None:
    """results.json's summaries are those of its own samples; report.md shows them."""
    server, bystander = run["server"], run["bystander"]
    polls = in_window(run["server_samples"], run)
    assert server["polls"] == run["server_peaks"]["polls_sent"] == len(polls)
    assert server["answered"] == sum(1 for s in polls if s["ok"])
    cpu = [s["cpu_pct"] for s in polls if s["cpu_pct"] is not None]
    if cpu:
        assert server["cpu_mean_pct"] == pytest.approx(sum(cpu) / len(cpu), abs=0.051)
        assert server["cpu_peak_pct"] == max(cpu)
    kinds = [s["verdict_kind"] for s in polls if s["verdict_kind"]]
    if server["verdict_kind"] not in (None, "generator"):  # generator: from compare's CpuSampler
        assert server["verdict_polls"] == kinds.count(server["verdict_kind"])
        assert server["verdict_polls"] == max(kinds.count(k) for k in kinds)
        assert server["verdict"] in {s["verdict"] for s in polls}
    probes = in_window(run["bystander_samples"], run)
    waited = ("timeout", "unfinished at stop")  # failed, but after waiting that long
    latencies = [
        p["latency_ms"]
        for p in probes
        if p["latency_ms"] is not None and (p["status"] is not None or p["error"] in waited)
    ]
    assert bystander["probes"] == len(probes)
    assert bystander["p50_ms"] == nearest_rank(latencies, 0.50)
    assert bystander["p99_ms"] == nearest_rank(latencies, 0.99)
    if server_cells is None:
        return
    cpu = fmt_ms(server["cpu_mean_pct"]), fmt_ms(server["cpu_peak_pct"])
    assert server_cells[1] == fmt_pair(*cpu)
    p50, p99 = fmt_small_ms(bystander["p50_ms"]), fmt_small_ms(bystander["p99_ms"])
    assert server_cells[-3] == fmt_pair(p50, p99)
    if server["verdict"] is not None:
        polled = f"{server['verdict_polls']}/{len(polls)} polls"
        assert server_cells[-1] == f"{server['verdict']}; {polled}"
    else:
        assert server_cells[-1] == "n/a"
