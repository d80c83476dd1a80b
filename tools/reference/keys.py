"""reference.json: the numbers of a compare and a capacity run as flat, dotted keys.

The docs quote these keys (`892 req/s<!-- ref: compare.upstream.async.rps -->`, checked by
tools/docs_check/refs.py). Every key, from the runs' own results.json:

    compare.<scenario>.<variant>.rps              measured req/s (Locust, measured window)
    compare.<scenario>.<variant>.p50_ms, .p95_ms, .p99_ms
    compare.<scenario>.<variant>.failures         failed requests; .failure_pct, .requests
    compare.<scenario>.<variant>.predicted_rps    Little's-law ceiling (report.md's "ceiling")
    compare.<scenario>.<variant>.pct_of_ceiling   rps as % of it
    compare.<scenario>.<variant>.api_cpu_pct      API process CPU, mean, % of one core
    compare.<scenario>.<variant>.children_cpu_pct its CPU workers (offload's process pool)
    compare.<scenario>.<variant>.loop_lag_max_ms  highest event-loop lag /runtime reported
    compare.<scenario>.<variant>.threadpool_borrowed_max   most threadpool tokens in use
    compare.<scenario>.<variant>.bystander_ms     p99 of the GET /healthz bystander probe
    compare.<scenario>.<variant>.bystander_p50_ms
    compare.<scenario>.ratio.<a>/<b>              rps of a / rps of b, every ordered pair
    capacity.<scenario>.<variant>.knee_users      users at the knee (most req/s within the SLO)
    capacity.<scenario>.<variant>.knee_rps        req/s at the knee
    capacity.<scenario>.<variant>.knee_p95_ms     p95 at the knee
    capacity.<scenario>.<variant>.limit_users     users of the step that ended the search
    machine.cores, machine.physical_cores, machine.memory_gib, machine.cpu_model
    options.compare.<option>, options.capacity.<option>   (users, duration_s, slo_ms, ...)
    wall_s.compare, wall_s.capacity, wall_s.total

A key whose value the run did not give (no /runtime answer, no ceiling for `items`, a search
with no sustainable step, a ratio over 0 req/s) is left out rather than null.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from itertools import permutations
from pathlib import Path
from typing import Any

Flat = dict[str, Any]

RATIO_DECIMALS = 4


def _get(data: Mapping[str, Any], *path: str) -> Any:
    for name in path:
        if not isinstance(data, Mapping):
            return None
        data = data.get(name)  # type: ignore[assignment]
    return data


def _put(flat: Flat, key: str, value: Any) -> None:
    if value is not None:
        flat[key] = value


def flatten_compare(results: Mapping[str, Any]) -> Flat:
    flat: Flat = {}
    rps: dict[str, dict[str, float]] = {}
    for run in results.get("runs", []):
        scenario, variant = run["scenario"], run["variant"]
        p = f"compare.{scenario}.{variant}."
        for metric in ("rps", "p50_ms", "p95_ms", "p99_ms", "failures", "failure_pct", "requests"):
            _put(flat, p + metric, _get(run, "stats", metric))
        _put(flat, p + "predicted_rps", _get(run, "ceiling", "rps"))
        _put(flat, p + "pct_of_ceiling", run.get("pct_of_ceiling"))
        _put(flat, p + "api_cpu_pct", _get(run, "server", "cpu_mean_pct"))
        _put(flat, p + "children_cpu_pct", _get(run, "server", "children_cpu_mean_pct"))
        _put(flat, p + "loop_lag_max_ms", _get(run, "server_peaks", "loop_lag_ms"))
        _put(flat, p + "threadpool_borrowed_max", _get(run, "server_peaks", "threadpool_borrowed"))
        _put(flat, p + "bystander_ms", _get(run, "bystander", "p99_ms"))
        _put(flat, p + "bystander_p50_ms", _get(run, "bystander", "p50_ms"))
        if _get(run, "stats", "rps"):
            rps.setdefault(scenario, {})[variant] = run["stats"]["rps"]
    for scenario, by_variant in rps.items():
        for a, b in permutations(by_variant, 2):
            ratio = round(by_variant[a] / by_variant[b], RATIO_DECIMALS)
            flat[f"compare.{scenario}.ratio.{a}/{b}"] = ratio
    return flat


def flatten_capacity(results: Mapping[str, Any]) -> Flat:
    flat: Flat = {}
    for search in results.get("searches", []):
        p = f"capacity.{search['scenario']}.{search['variant']}."
        _put(flat, p + "knee_users", search.get("knee_users"))
        _put(flat, p + "knee_rps", search.get("max_rps"))
        _put(flat, p + "knee_p95_ms", search.get("knee_p95_ms"))
        _put(flat, p + "limit_users", search.get("limit_users"))
    return flat


def flatten_common(results: Mapping[str, Any], kind: str) -> Flat:
    flat: Flat = {}
    for name, value in (results.get("options") or {}).items():
        if isinstance(value, int | float | str) and not isinstance(value, bool):
            flat[f"options.{kind}.{name}"] = value
    _put(flat, f"wall_s.{kind}", results.get("wall_s"))
    return flat


def machine_keys(results: Mapping[str, Any]) -> Flat:
    flat: Flat = {}
    for name in ("cores", "physical_cores", "memory_gib", "cpu_model"):
        _put(flat, f"machine.{name}", _get(results, "machine", name))
    return flat


def flatten(results: Mapping[str, Any]) -> Flat:
    """The keys of one results.json, compare's or capacity's."""
    kind = str(results.get("kind"))
    body = flatten_compare(results) if kind == "compare" else flatten_capacity(results)
    return {**body, **flatten_common(results, kind), **machine_keys(results)}


def reference(
    compare: Mapping[str, Any] | None, capacity: Mapping[str, Any] | None, total_s: float
) -> Flat:
    """reference.json: compare's keys, capacity's, the machine, the options and wall times."""
    flat: Flat = {}
    for results in (compare, capacity):
        if results is not None:
            flat.update(flatten(results))
    flat["wall_s.total"] = round(total_s, 1)
    return flat


def keys_of(path: Path) -> Flat:
    """The keys of a reference folder (its reference.json), a results folder (its
    results.json), or the newest results folder inside `path` (e.g. `results`)."""
    if (path / "reference.json").is_file():
        data: Flat = json.loads((path / "reference.json").read_text())
        return data
    if path.is_file():
        path = path.parent
    if not (path / "results.json").is_file():
        found = sorted(path.glob("*/results.json"), key=lambda p: p.stat().st_mtime)
        if not found:
            raise FileNotFoundError(f"{path}: no reference.json, results.json nor */results.json")
        path = found[-1].parent
    flat: Flat = flatten(json.loads((path / "results.json").read_text()))
    return flat
