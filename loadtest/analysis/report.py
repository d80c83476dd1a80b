"""Render report.md for compare and capacity results: small tables a person reads, from
results.json's own data (so the two never disagree)."""

from __future__ import annotations

import itertools
from collections import Counter

from loadtest.analysis.machine import one_line
from loadtest.analysis.modes import CLOSED_VS_OPEN, is_open, level, level_text, run_label
from loadtest.analysis.records import (
    CapacityResults,
    CompareResults,
    Results,
    RunRecord,
    SearchRecord,
    TargetInfo,
)
from loadtest.analysis.server_side import SOURCES
from loadtest.generator.scenarios import SCENARIOS
from services.registry import VARIANTS


def fmt_rps(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def fmt_ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def fmt_pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}%"


def fmt_small_ms(value: float | None) -> str:
    """Milliseconds with a decimal below 10 ms: a bystander answers in 1.4 ms, not "1"."""
    if value is None:
        return "n/a"
    return f"{value:.1f}" if value < 10 else f"{value:.0f}"


def fmt_pair(a: str, b: str) -> str:
    return "n/a" if a == b == "n/a" else f"{a} / {b}"


def _peak(value: float | int | None) -> str:
    return "-" if value is None else f"{value:g}"


def header(title: str, results: Results) -> list[str]:
    mline, vline = one_line(results["machine"], results["versions"])
    return [
        f"# {title}",
        "",
        "```sh",
        results["command"],
        "```",
        "",
        f"- started: {results['started']} (wall time {results['wall_s']:.0f} s)",
        f"- machine: {mline}",
        f"- versions: {vline}",
    ]


def _settings_line(variant: str, target: TargetInfo) -> str:
    """Only the settings that bound this variant (its registry traits): tokens mean nothing
    to async, a pool nothing to a variant that blocks its loop, etc."""
    s, v = target["settings"], VARIANTS[variant]
    processes = s.get("api_workers") if s.get("api_server") == "gunicorn" else 1
    parts = [f"{s.get('api_server')} x {processes} process(es)"]
    if "threadpool" in (v.io, v.cpu):
        parts.append(f"{s.get('threadpool_tokens')} threadpool tokens")
    if v.io != "blocks-loop":
        parts.append(f"DB pool {s.get('db_pool_max')}")
    if v.cpu == "executor":
        parts.append(f"{s.get('cpu_executor')} executor x {s.get('cpu_workers')}")
    return f"  - `{variant}` {target['url']}: " + ", ".join(parts)


COMPARE_COLUMNS = (
    "| variant | req/s | p50 ms | p95 ms | p99 ms | fail % | ceiling req/s | % of ceiling "
    "| loop lag peak ms | threads borrowed | DB waiting | in flight | Locust CPU |",
    "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
)


def _name(run: RunRecord, paired: bool) -> str:
    """`sync`, or `sync` (open) for the open-loop run of a pair."""
    label = run_label(run, paired)
    return f"`{run['variant']}`" + label[len(run["variant"]) :]


def compare_row(run: RunRecord, paired: bool = False) -> str:
    st, peaks, cpu = run["stats"], run["server_peaks"], run["generator_cpu"]
    cells = [
        _name(run, paired),
        fmt_rps(st["rps"]),
        fmt_ms(st["p50_ms"]),
        fmt_ms(st["p95_ms"]),
        fmt_ms(st["p99_ms"]),
        "n/a" if st["failure_pct"] is None else f"{st['failure_pct']:.1f}",
        fmt_rps(run["ceiling"]["rps"]),
        fmt_pct(run["pct_of_ceiling"]),
        _peak(peaks.get("loop_lag_ms")),
        _peak(peaks.get("threadpool_borrowed")),
        _peak(peaks.get("db_pool_waiting")),
        _peak(peaks.get("in_flight")),
        fmt_pct(cpu.get("peak_pct_one_core")),
    ]
    return "| " + " | ".join(cells) + " |"


def _has_children(runs: list[RunRecord]) -> bool:
    """Any CPU in the API's worker processes (offload's pool): then it gets its own column."""
    return any(r["server"]["children_cpu_peak_pct"] for r in runs)


def server_columns(children: bool) -> tuple[str, str]:
    workers = " CPU workers % mean / peak |" if children else ""
    return (
        f"| variant | API CPU % mean / peak |{workers} bystander p50 / p99 ms "
        "| bystander probes (failed) | verdict; polls of that kind |",
        "|---|--:|" + ("--:|" if children else "") + "--:|--:|---|",
    )


def server_cells(run: RunRecord, children: bool, paired: bool = False) -> list[str]:
    """The server-side cells of a run: API CPU, its CPU workers, bystander, verdict."""
    sv, by = run["server"], run["bystander"]
    cpu = fmt_pair(fmt_ms(sv["cpu_mean_pct"]), fmt_ms(sv["cpu_peak_pct"]))
    cells = [_name(run, paired), cpu]
    if children:
        cells.append(
            fmt_pair(fmt_ms(sv["children_cpu_mean_pct"]), fmt_ms(sv["children_cpu_peak_pct"]))
        )
    cells += [
        fmt_pair(fmt_small_ms(by["p50_ms"]), fmt_small_ms(by["p99_ms"])),
        f"{by['probes']} ({by['failures']})" if by["probes"] else "none",
        verdict_text(run),
    ]
    return cells


def cpu_text(run: RunRecord) -> str:
    """API CPU mean / peak, and its CPU workers' when they worked (offload's pool)."""
    sv = run["server"]
    text = fmt_pair(fmt_ms(sv["cpu_mean_pct"]), fmt_ms(sv["cpu_peak_pct"]))
    if sv["children_cpu_peak_pct"]:
        workers = fmt_pair(fmt_ms(sv["children_cpu_mean_pct"]), fmt_ms(sv["children_cpu_peak_pct"]))
        text += f" (workers {workers})"
    return text


def verdict_text(run: RunRecord) -> str:
    sv = run["server"]
    if sv["verdict"] is None:
        return "n/a"
    return f"{sv['verdict']}; {sv['verdict_polls']}/{sv['polls']} polls"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _sources_line(runs: list[RunRecord]) -> str:
    sources = dict.fromkeys(r["server"]["source"] for r in runs)
    return "Server samples: " + "; ".join(SOURCES.get(s, s) for s in sources) + "."


def mode_lines(mode: str) -> list[str]:
    """Which mode ran, and the two sentences that say what the difference is."""
    ran = {
        "closed": "closed loop",
        "open": "open loop",
        "paired": "closed loop, each run followed by an open loop at the req/s it achieved",
    }[mode]
    return [f"- mode: **{ran}**. {CLOSED_VS_OPEN}"]


def load_line(o: dict[str, object], mode: str) -> str:
    common = (
        f"{o['duration_s']} s measured after a {o['warmup_s']} s warm-up under the same load "
        f"(statistics dropped); delay_ms={o['delay_ms']}, work={o['work']}"
    )
    users = f"{o['users']} users, spawn rate {o['spawn_rate']:g}/s"
    open_loop = f"{o.get('arrivals')} arrivals, at most {o.get('max_in_flight')} in flight"
    if mode == "open":
        return f"- load: open loop at {o['arrival_rate']:g} req/s, {open_loop}; {common}"
    if mode == "paired":
        return f"- load: closed loop {users}, then open loop ({open_loop}); {common}"
    return f"- load: {users}, {common}"


def open_loop_table(runs: list[RunRecord], paired: bool) -> list[str]:
    """What each open-loop run's schedule did: arrivals due, sent, dropped, left unanswered."""
    opened = [r for r in runs if is_open(r)]
    if not opened:
        return []
    lines = [
        "Open loop (the generator's own accounting over the measured window; send lag: how late "
        "a request started after its scheduled time):",
        "",
        "| variant | arrival rate req/s | scheduled | sent | dropped | unanswered at the end "
        "| peak in flight | send lag p99 ms |",
        "|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for run in opened:
        b = run["open_loop"]
        if b is None:
            lines.append(
                f"| {_name(run, paired)} | {level(run):g} | n/a | n/a | n/a | n/a | n/a | n/a |"
            )
            continue
        lines.append(
            f"| {_name(run, paired)} | {level(run):g} | {b['scheduled']} | {b['sent']} "
            f"| {b['dropped']} | {b['unfinished']} | {b['peak_in_flight']} "
            f"| {fmt_small_ms(b['send_lag_p99_ms'])} |"
        )
    return [*lines, ""]


def pairs(runs: list[RunRecord]) -> list[tuple[RunRecord, RunRecord]]:
    """(closed, open) runs of the same variant, in order: --pair-open-loop's pairs."""
    found = []
    for closed, opened in itertools.pairwise(runs):
        if not is_open(closed) and is_open(opened) and closed["variant"] == opened["variant"]:
            found.append((closed, opened))
    return found


def p99_ratio(closed: RunRecord, opened: RunRecord) -> float | None:
    a, b = closed["stats"]["p99_ms"], opened["stats"]["p99_ms"]
    return b / a if a and b is not None else None


def pair_table(runs: list[RunRecord]) -> list[str]:
    """Closed-loop and open-loop p99 side by side, at the same throughput."""
    found = pairs(runs)
    if not found:
        return []
    lines = [
        "Closed vs open loop at the same throughput (the open loop's arrival rate is the "
        "closed run's req/s; latency from the scheduled start):",
        "",
        "| variant | closed: users | req/s | p50 / p99 ms | open: arrivals req/s | req/s "
        "| p50 / p99 ms | fail % | p99 open / closed |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for closed, opened in found:
        c, o = closed["stats"], opened["stats"]
        ratio = p99_ratio(closed, opened)
        fail = "n/a" if o["failure_pct"] is None else f"{o['failure_pct']:.1f}"
        lines.append(
            f"| `{closed['variant']}` | {closed['users']} | {fmt_rps(c['rps'])} "
            f"| {fmt_ms(c['p50_ms'])} / {fmt_ms(c['p99_ms'])} | {level(opened):g} "
            f"| {fmt_rps(o['rps'])} | {fmt_ms(o['p50_ms'])} / {fmt_ms(o['p99_ms'])} | {fail} "
            f"| {'n/a' if ratio is None else f'{ratio:.1f}x'} |"
        )
    return [*lines, ""]


def compare_markdown(results: CompareResults) -> str:
    o = results["options"]
    mode = results.get("mode", "closed")
    paired = mode == "paired"
    scenarios = list(dict.fromkeys(r["scenario"] for r in results["runs"]))
    lines = header("Compare: " + ", ".join(scenarios), results)
    lines += [
        *mode_lines(mode),
        load_line(o, mode),
        "- targets (settings in force, from /runtime):",
        *(_settings_line(v, t) for v, t in results["targets"].items()),
        "",
        "Ceiling: Little's law, the most req/s the variant's limits allow (see "
        "loadtest/analysis/littles_law.py). Peaks: the highest of the target's /runtime answers "
        "over the measured window (a poll left unanswered counts in the verdict, not here). "
        "Locust CPU: its busiest process, % of one core.",
        "",
        "Server side, over the same window: API CPU in % of one core (CPU workers: the API's "
        "worker processes, offload's pool); bystander: one `GET /healthz` every 0.2 s on the "
        "loaded target, not in Locust's stats: what every other request feels; verdict: the "
        "most frequent bottleneck among the /runtime polls, in how many of them "
        "(loadtest/generator/verdict.py). " + _sources_line(results["runs"]),
    ]
    for scenario in scenarios:
        runs = [r for r in results["runs"] if r["scenario"] == scenario]
        s = SCENARIOS[scenario]
        lines += ["", f"## {scenario}: `{s.method} {s.shown(o)}`", ""]
        lines += [*COMPARE_COLUMNS, *(compare_row(r, paired) for r in runs), ""]
        lines += pair_table(runs) + open_loop_table(runs, paired)
        children = _has_children(runs)
        lines += ["Server side:", "", *server_columns(children)]
        lines += [_row(server_cells(r, children, paired)) for r in runs] + [""]
        lines += [f"- {_name(r, paired)} ceiling: {r['ceiling']['why']}" for r in runs]
        lines += [""]
        lines += [f"![{scenario} {c}]({f})" for c, f in results["charts"].get(scenario, {}).items()]
        warned = [(f"{scenario} x {run_label(r, paired)}", w) for r in runs for w in r["warnings"]]
        lines += warning_lines(warned, len(runs))
    lines += [
        "",
        "## Files",
        "",
        "- `results.json`: everything above, plus every sample and each run's Locust command",
        "- `locust/`: Locust's csv, json, html and log of every run (the history csv includes "
        "the warm-up; the totals do not)",
        "",
        "One run's Locust command:",
        "",
        "```sh",
        results["runs"][0]["command"] if results["runs"] else "",
        "```",
        "",
    ]
    return "\n".join(lines)


def limit_text(search: SearchRecord) -> str:
    """The verdict that says what limits the variant, and where it was seen."""
    if search["limit_verdict"] is None:
        return "n/a"
    if search.get("mode") == "open":
        limit, knee, unit = search["limit_rate"], search["knee_rate"], "req/s arrivals"
    else:
        limit, knee, unit = search["limit_users"], search["knee_users"], "users"
    at = "the knee" if limit == knee else "the step past the knee"
    return f"{search['limit_verdict']} (at {limit:g} {unit}, {at})" if limit is not None else "n/a"


def warning_lines(warned: list[tuple[str, str]], runs: int) -> list[str]:
    """ "- **where**: warning" lines; a warning every run had is said once, first."""
    counts = Counter(w for _, w in warned)
    every = [w for w, n in counts.items() if runs > 1 and n == runs]
    lines = [f"- **every run**: {w}" for w in every]
    lines += [f"- **{where}**: {w}" for where, w in warned if w not in every]
    return ["", "Warnings:", "", *lines] if lines else []


def capacity_markdown(results: CapacityResults) -> str:
    o = results["options"]
    open_loop = results.get("mode") == "open"
    lines = header("Capacity search", results)
    ladder = (
        f"open-loop arrival rates {', '.join(f'{r:g}' for r in o['rates'])} req/s "
        f"({o['arrivals']} arrivals, at most {o['max_in_flight']} in flight; after the first "
        f"rate that fails, {o['refine']} halvings of the gap to the last that passed)"
        if open_loop
        else f"users {', '.join(map(str, o['steps']))}"
    )
    lines += [
        *mode_lines("open" if open_loop else "closed"),
        f"- SLO: p95 <= {o['slo_ms']:g} ms and failures <= {o['max_failure_pct']:g}%"
        + (" and no arrival dropped" if open_loop else "")
        + f"; steps of {o['step_duration_s']} s at {ladder}",
        "- targets (settings in force, from /runtime):",
        *(_settings_line(v, t) for v, t in results["targets"].items()),
    ]
    for scenario in dict.fromkeys(s["scenario"] for s in results["searches"]):
        searches = [s for s in results["searches"] if s["scenario"] == scenario]
        lines += ["", f"## {scenario}", ""]
        knee_column = "arrival rate at the knee req/s" if open_loop else "users at the knee"
        lines += [
            f"| variant | highest sustainable req/s | {knee_column} | p95 there ms "
            "| Little's-law ceiling there | limited by (server verdict) | stopped because |",
            "|---|--:|--:|--:|---|---|---|",
        ]
        for s in searches:
            ceil = s["ceiling_at_knee"]
            ceil_text = f"{fmt_rps(ceil['rps'])} ({ceil['why']})" if ceil else "n/a"
            knee = s["knee_rate"] if open_loop else s["knee_users"]
            lines.append(
                f"| `{s['variant']}` | {fmt_rps(s['max_rps'])} | "
                f"{'none' if knee is None else f'{knee:g}'} "
                f"| {fmt_ms(s['knee_p95_ms'])} | {ceil_text} | {limit_text(s)} "
                f"| {s['stop_reason']} |"
            )
        runs = [st for s in searches for st in s["steps"]]
        lines += ["", _sources_line(runs)]
        lines += ["", f"![capacity {scenario}]({results['charts'].get(scenario, '')})", ""]
        lines += [
            "Steps (API CPU in % of one core, its CPU workers' in brackets; bystander: "
            "`GET /healthz` every 0.2 s on the loaded target; verdict: the most frequent "
            "bottleneck among its /runtime polls):",
            "",
            f"| variant | {'arrivals req/s' if open_loop else 'users'} | req/s | p95 ms | fail % "
            "| within SLO | API CPU % mean / peak "
            "| bystander p99 ms | verdict; polls of that kind |",
            "|---|--:|--:|--:|--:|---|--:|--:|---|",
        ]
        for s in searches:
            for step in s["steps"]:
                st = step["stats"]
                fail = "n/a" if st["failure_pct"] is None else f"{st['failure_pct']:.1f}"
                lines.append(
                    f"| `{s['variant']}` | {level(step):g} | {fmt_rps(st['rps'])} "
                    f"| {fmt_ms(st['p95_ms'])} | {fail} | {'yes' if step['ok'] else 'no'} "
                    f"| {cpu_text(step)} "
                    f"| {fmt_small_ms(step['bystander']['p99_ms'])} | {verdict_text(step)} |"
                )
        warned = [(f"{r['variant']}, {level_text(r)}", w) for r in runs for w in r["warnings"]]
        lines += warning_lines(warned, len(runs))
    lines.append("")
    return "\n".join(lines)
