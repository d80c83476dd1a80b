"""`make reference`: the whole matrix on the machine at hand, into docs/results/<date>-<machine>/.

Starts a native lab on free ports (embedded PostgreSQL, the upstream, every variant needed:
loadtest/orchestrate/labs.py; `make lab` may keep running) unless --targets names a running
one, then runs, as subprocesses with their exact command lines recorded:
- `python -m loadtest.compare` over every scenario x every variant,
- `python -m loadtest.capacity` over upstream and cpu-python x every variant,
and writes compare/ and capacity/ (report.md, results.json, PNG charts; Locust's raw files only
with --keep-locust), method.md (hardware, versions, exact commands, wall times, every key) and
reference.json (tools/reference/keys.py). A full run written to docs/results becomes the current
reference (the `Current reference:` line of docs/results/README.md).
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loadtest.analysis.machine import Machine, machine, versions
from loadtest.generator.scenarios import SCENARIOS
from loadtest.orchestrate import cli
from services.registry import NAMES
from tools.reference.keys import Flat, reference

ROOT = Path(__file__).resolve().parents[2]
RESULTS = Path("docs/results")
INDEX = RESULTS / "README.md"
CAPACITY_SCENARIOS = ["upstream", "cpu-python"]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m tools.reference run",
        description="Run compare over every scenario x variant and capacity over upstream and "
        "cpu-python, on a native lab it starts, into docs/results/<date>-<machine>/.",
    )
    p.add_argument("--scenarios", type=cli.scenario_list, default=list(SCENARIOS))
    p.add_argument("--variants", type=cli.variant_list, default=list(NAMES))
    p.add_argument("--users", type=int, default=200, help="compare's users (default: 200)")
    p.add_argument("--duration", default="30s", type=_duration, help="compare (default: 30s)")
    p.add_argument("--warmup", default="5s", type=_duration, help="compare (default: 5s)")
    p.add_argument("--delay-ms", type=int, default=200)
    p.add_argument("--work", type=int, default=20)
    p.add_argument(
        "--capacity-scenarios",
        type=lambda v: cli.scenario_list(v) if v.strip() else [],
        default=CAPACITY_SCENARIOS,
        help="capacity's scenarios ('' = no capacity run) (default: upstream,cpu-python)",
    )
    p.add_argument("--max-users", type=int, default=800, help="capacity (default: 800)")
    p.add_argument("--step-duration", default="10s", type=_duration, help="capacity (10s)")
    p.add_argument("--steps", default=None, help="capacity's users per step (default: its own)")
    p.add_argument("--slo-ms", type=float, default=500.0, help="capacity (default: 500)")
    p.add_argument(
        "--targets", default=None, help="use a running lab (as compare's --targets) instead"
    )
    p.add_argument("--out", type=Path, default=RESULTS, help="parent folder (docs/results)")
    p.add_argument("--name", default=None, help="folder name (default: <date>-<machine>)")
    p.add_argument("--keep-locust", action="store_true", help="keep Locust's raw files")
    current = p.add_mutually_exclusive_group()
    current.add_argument(
        "--current",
        dest="current",
        action="store_true",
        default=None,
        help="name it in docs/results/README.md (default: when the full matrix "
        "was run into docs/results)",
    )
    current.add_argument("--no-current", dest="current", action="store_false")
    return p.parse_args(argv)


def _duration(value: str) -> str:
    """Checked here (Locust's format), passed on as written."""
    cli.duration(value)
    return value


def machine_slug(m: Machine) -> str:
    """`2core-amd-epyc`: logical cores and the first two words of the CPU's name."""
    name = re.sub(r"\((?:r|tm)\)", " ", m["cpu_model"].lower())
    words = [w for w in re.findall(r"[a-z]+", name) if w not in {"cpu", "processor", "core"}]
    return "-".join([f"{m['cores']}core", *words[:2]]) or f"{m['cores']}core"


def _free_name(base: Path, name: str) -> Path:
    path, n = base / name, 1
    while path.exists():
        n += 1
        path = base / f"{name}-{n}"
    return path


def _run(cmd: list[str], out: Path, into: Path) -> tuple[Path, float]:
    """Run one orchestrator with --out `out`; move the folder it made to `into`."""
    print("reference: $ " + shlex.join(cmd), file=sys.stderr, flush=True)
    t0 = time.monotonic()
    subprocess.run([*cmd, "--out", str(out)], cwd=ROOT, check=True)
    made = [p for p in out.iterdir() if (p / "results.json").is_file()]
    if len(made) != 1:
        raise RuntimeError(f"expected one results folder in {out}, found {made}")
    shutil.move(made[0], into)
    out.rmdir()
    return into, time.monotonic() - t0


def _python_m(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def _shown(cmd: Sequence[str]) -> str:
    return shlex.join(["python", *cmd[1:]])


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    t0, started = time.monotonic(), datetime.now(UTC)
    host = machine()
    if host["load_avg_1m_at_start"] > 0.5 * host["cores"]:
        print(
            f"reference: warning: load average {host['load_avg_1m_at_start']} on "
            f"{host['cores']} cores: the machine is not quiet, the numbers will show it",
            file=sys.stderr,
        )
    base = args.out if args.out.is_absolute() else ROOT / args.out
    dest = _free_name(base, args.name or f"{started:%Y-%m-%d}-{machine_slug(host)}")
    dest.mkdir(parents=True)
    common = ["--variants", ",".join(args.variants), "--delay-ms", str(args.delay_ms)]
    common += ["--work", str(args.work)]
    compare_cmd = _python_m(
        "loadtest.compare",
        "--scenarios",
        ",".join(args.scenarios),
        *common,
        "--users",
        str(args.users),
        "--duration",
        args.duration,
        "--warmup",
        args.warmup,
    )
    capacity_cmd = _python_m(
        "loadtest.capacity",
        "--scenarios",
        ",".join(args.capacity_scenarios),
        *common,
        "--max-users",
        str(args.max_users),
        "--step-duration",
        args.step_duration,
        "--slo-ms",
        f"{args.slo_ms:g}",
        *(["--steps", args.steps] if args.steps else []),
    )
    commands: list[tuple[str, list[str], float]] = []
    compare = capacity = None
    with ExitStack() as stack:
        targets = args.targets
        if targets is None:
            from loadtest.orchestrate.labs import NativeLab

            print("reference: starting a native lab on free ports ...", file=sys.stderr)
            lab = stack.enter_context(NativeLab())
            targets = ",".join(f"{v}={lab.start_api(v, {})}" for v in args.variants)
        for kind, cmd in (("compare", compare_cmd), ("capacity", capacity_cmd)):
            if kind == "capacity" and not args.capacity_scenarios:
                continue
            cmd = [*cmd, "--targets", targets]
            folder, took = _run(cmd, dest / f".{kind}-tmp", dest / kind)
            if not args.keep_locust:
                shutil.rmtree(folder / "locust", ignore_errors=True)
            commands.append((kind, cmd, took))
            results = json.loads((folder / "results.json").read_text())
            if kind == "compare":
                compare = results
            else:
                capacity = results
    total = time.monotonic() - t0
    flat = reference(compare, capacity, total)
    (dest / "reference.json").write_text(json.dumps(flat, indent=1) + "\n")
    vers = (compare or capacity or {}).get("versions") or versions()
    method = method_md(dest.name, argv, host, commands, total, flat, vers)
    (dest / "method.md").write_text(method)
    full = (
        set(args.scenarios) == set(SCENARIOS)
        and set(args.variants) == set(NAMES)
        and set(args.capacity_scenarios) >= set(CAPACITY_SCENARIOS)
    )
    if args.current or (args.current is None and full and base == ROOT / RESULTS):
        set_current(base / "README.md", dest.name)
        print(f"reference: {INDEX} now names {dest.name} as the current reference", file=sys.stderr)
    print(f"reference: done in {total:.0f} s: {dest}", file=sys.stderr)
    return 0


def set_current(index: Path, name: str) -> None:
    text = index.read_text() if index.exists() else ""
    line = f"Current reference: {name}"
    if re.search(r"^Current reference:.*$", text, re.M):
        text = re.sub(r"^Current reference:.*$", line, text, count=1, flags=re.M)
    else:
        text = text.rstrip("\n") + f"\n\n{line}\n"
    index.write_text(text)


def _cell(value: Any) -> str:
    """A value as the keys table shows it: floats to 6 significant digits (reference.json
    keeps them whole: quote at most the decimals shown here)."""
    return f"{value:.6g}" if isinstance(value, float) else str(value).replace("|", "\\|")


def method_md(
    name: str,
    argv: Sequence[str],
    host: Machine,
    commands: Sequence[tuple[str, list[str], float]],
    total_s: float,
    flat: Flat,
    vers: dict[str, Any],
) -> str:
    lines = [
        f"# Reference run {name}: method",
        "",
        "Made by `make reference` (tools/reference/run.py) on a native lab it started on free "
        "ports: PostgreSQL from the pgserver wheel, the mock upstream and every variant with "
        "default settings (each target's settings in force are in the results.json files).",
        "",
        "## Machine",
        "",
        f"- {host['cores']} logical cores ({host['physical_cores']} physical), "
        f"{host['cpu_model']}, {host['memory_gib']} GiB",
        f"- {host['os']}",
        f"- load average (1 min) at the start: {host['load_avg_1m_at_start']}",
        "",
        "## Versions",
        "",
        "| package | version |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in vers.items()),
        "",
        "## Commands",
        "",
        "```sh",
        shlex.join(["python", "-m", "tools.reference", "run", *argv]),
        "```",
        "",
        "which ran (`--targets`: the lab it started; against `make lab`, leave it out):",
        "",
        "```sh",
        *(_shown(cmd) for _, cmd, _ in commands),
        "```",
        "",
        "## Wall time",
        "",
        *(f"- {kind}: {took:.0f} s" for kind, _, took in commands),
        f"- total, lab start included: {total_s:.0f} s",
        "",
        "## Files",
        "",
        "- `compare/`, `capacity/`: each command's report.md, results.json and PNG charts "
        "(Locust's raw csv/json/html files are not kept: results.json holds the numbers)",
        "- `reference.json`: the keys below, which the docs quote "
        "(`892 req/s<!-- ref: compare.upstream.async.rps -->`)",
        "",
        "## Keys",
        "",
        "| key | value |",
        "|---|---|",
        *(f"| {k} | {_cell(v)} |" for k, v in flat.items()),
        "",
    ]
    return "\n".join(lines)
