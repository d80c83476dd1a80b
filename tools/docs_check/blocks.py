"""Checkable command blocks: run them against a native lab and match their output.

A block is checkable when its info string starts with `console` and has the word `check`
(GitHub highlights it as a console session and ignores the rest):

    ```console check
    $ curl -s 'http://127.0.0.1:8001/cpu?work=0'
    {"detail":[{"type":"greater_than_equal",...}]}
    $ python -m tools.reference keys results | grep 'ratio.async/sync'
    compare.upstream.ratio.async/sync {3..6}
    ```

Words after `check` (all optional):
- `lab=none`: needs no lab; `lab=sync,async`: only these variants (default: every variant);
- `env=KEY=VALUE` (repeatable): the block's variants run with these settings, restarted for the
  block and back to the defaults after it;
- `timeout=SECONDS` per command (default 120).

Body: a line `$ command` is a command (a trailing `\\` continues it on the next line); the lines
up to the next command are its expected output, matched against what it prints (stdout and
stderr together, as in a terminal), line by line:
- blank lines are ignored on both sides, trailing spaces too;
- a line `...` skips any number of lines (none included);
- inside a line, `...` matches any text, and `{a..b}` a number between a and b inclusive
  (`{0.9..1.1}`, `{-5..5}`): write ratios and ranges, not a single run's req/s;
- a last line `(exit N)` expects exit status N; otherwise the command must exit 0;
- a command with no expected lines must only exit 0.

Commands run with bash in the repository root, the virtualenv's bin first on PATH, against a
native lab the check starts on free ports (embedded PostgreSQL, the upstream, the variants:
loadtest/orchestrate/labs.py), so `make lab` may run alongside: in commands, the lab's fixed
ports (8001-8005, 8080 on 127.0.0.1 or localhost) are rewritten to the started ones,
LAB_TARGETS points `make compare`/`make capacity` at them, and in the output the started ports
read as the fixed ones again. Keep checked runs short: a few seconds, tens of users.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache
from pathlib import Path

from services import registry
from services.lab.ports import UPSTREAM_PORT
from tools.docs_check.markdown import Problem, fenced

DEFAULT_TIMEOUT_S = 120.0
SKIP = "..."
EXIT = re.compile(r"^\(exit (\d+)\)$")
TOKEN = re.compile(r"\.\.\.|\{(-?\d+(?:\.\d+)?)\.\.(-?\d+(?:\.\d+)?)\}")
NUMBER = r"(?<![\d.])-?\d+(?:\.\d+)?(?![\d])"


@dataclass
class Command:
    line: int  # of the `$` line in the page
    command: str
    expected: list[tuple[int, str]] = field(default_factory=list)  # (line, text)
    exit_code: int = 0


@dataclass
class Block:
    page: Path
    line: int
    variants: tuple[str, ...]  # () = needs no lab
    env: dict[str, str]
    timeout_s: float
    commands: list[Command]

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def parse_info(info: str) -> tuple[tuple[str, ...], dict[str, str], float] | None:
    """(variants, env, timeout) for a checkable block's info string; None when not checkable."""
    words = info.split()
    if len(words) < 2 or words[0] != "console" or "check" not in words[1:]:
        return None
    variants, env, timeout = registry.NAMES, {}, DEFAULT_TIMEOUT_S
    for word in words[words.index("check") + 1 :]:
        key, _, value = word.partition("=")
        if key == "lab":
            names = tuple(n for n in value.split(",") if n and n != "none")
            unknown = [n for n in names if n not in registry.NAMES]
            if unknown:
                raise ValueError(f"lab={value}: unknown variant(s) {', '.join(unknown)}")
            variants = tuple(n for n in registry.NAMES if n in names)
        elif key == "env" and "=" in value:
            k, _, v = value.partition("=")
            env[k] = v
        elif key == "timeout":
            timeout = float(value)
        else:
            raise ValueError(f"unknown option {word!r} (lab=, env=, timeout=)")
    return variants, env, timeout


def parse_body(body: str, first_line: int) -> list[Command]:
    commands: list[Command] = []
    lines = body.splitlines()
    i = 0
    while i < len(lines):
        text, number = lines[i], first_line + i
        i += 1
        if text.startswith("$ ") or text == "$":
            command = text[2:]
            while command.endswith("\\") and i < len(lines):
                command = command + "\n" + lines[i]
                i += 1
            commands.append(Command(number, command))
        elif commands and text.strip():
            commands[-1].expected.append((number, text.rstrip()))
    for cmd in commands:
        if cmd.expected and (m := EXIT.match(cmd.expected[-1][1].strip())):
            cmd.exit_code = int(m[1])
            cmd.expected.pop()
    return commands


def blocks(root: Path, page: Path) -> tuple[list[Block], list[Problem]]:
    found, problems = [], []
    for f in fenced((root / page).read_text()):
        try:
            options = parse_info(f.info)
        except ValueError as exc:
            problems.append(Problem(page, f.line, f"```{f.info}: {exc}"))
            continue
        if options is None:
            continue
        commands = parse_body(f.body, f.body_line)
        if not commands:
            problems.append(Problem(page, f.line, "checkable block without a `$ command` line"))
            continue
        found.append(Block(page, f.line, *options, commands))
    return found, problems


# ---- matching -----------------------------------------------------------------------------


@cache
def _line_pattern(expected: str) -> tuple[re.Pattern[str], tuple[tuple[Decimal, Decimal], ...]]:
    parts, ranges, pos = [], [], 0
    for m in TOKEN.finditer(expected):
        parts.append(re.escape(expected[pos : m.start()]))
        if m[0] == SKIP:
            parts.append(".*?")
        else:
            parts.append(f"({NUMBER})")
            ranges.append((Decimal(m[1]), Decimal(m[2])))
        pos = m.end()
    parts.append(re.escape(expected[pos:]))
    return re.compile("".join(parts)), tuple(ranges)


def line_matches(expected: str, actual: str) -> bool:
    if expected == actual:
        return True
    pattern, ranges = _line_pattern(expected)
    m = pattern.fullmatch(actual)
    if m is None:
        return False
    return all(low <= Decimal(m[n + 1]) <= high for n, (low, high) in enumerate(ranges))


def match_output(expected: Sequence[str], actual: Sequence[str]) -> int | None:
    """None when `actual` matches `expected`, else the index of the expected line that could
    not be matched furthest along."""
    worst = [0]
    memo: dict[tuple[int, int], bool] = {}

    def go(e: int, a: int) -> bool:
        if (e, a) in memo:
            return memo[e, a]
        worst[0] = max(worst[0], e)
        if e == len(expected):
            ok = a == len(actual)
        elif expected[e].strip() == SKIP:
            ok = any(go(e + 1, k) for k in range(a, len(actual) + 1))
        else:
            ok = a < len(actual) and line_matches(expected[e], actual[a]) and go(e + 1, a + 1)
        memo[e, a] = ok
        return ok

    return None if go(0, 0) else min(worst[0], len(expected) - 1)


# ---- running ------------------------------------------------------------------------------


class Lab:
    """The native lab the blocks run against: free ports, started once, stopped after."""

    def __init__(self, variants: Sequence[str], log: Path | None = None) -> None:
        from loadtest.orchestrate.labs import NativeLab

        self.variants = list(variants)
        self.native = NativeLab(log_dir=log)
        self.urls: dict[str, str] = {}
        self.env: dict[str, dict[str, str]] = {}

    def __enter__(self) -> Lab:
        self.native.__enter__()
        try:
            for v in self.variants:
                self.urls[v] = self.native.start_api(v, {})
                self.env[v] = {}
        except BaseException:
            self.native.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.native.__exit__(None, None, None)

    def configure(self, variants: Sequence[str], env: Mapping[str, str]) -> None:
        """Restart the variants whose settings differ from `env`."""
        for v in variants:
            if self.env[v] != dict(env):
                self.native.stop_api(v)
                self.native.start_api(v, dict(env))
                self.env[v] = dict(env)

    def ports(self) -> dict[int, int]:
        """Fixed port -> started port."""
        ports = {registry.get(v).port: int(url.rsplit(":", 1)[1]) for v, url in self.urls.items()}
        ports[UPSTREAM_PORT] = self.native.upstream_port
        return ports


def _rewrite(text: str, ports: Mapping[int, int]) -> str:
    for fixed, started in ports.items():
        text = re.sub(rf"\b(127\.0\.0\.1|localhost):{fixed}\b", rf"\g<1>:{started}", text)
    return text


def run_command(
    root: Path, cmd: Command, timeout_s: float, env: Mapping[str, str], ports: Mapping[int, int]
) -> tuple[int | None, list[str]]:
    """(exit status or None on timeout, output lines with the started ports read back)."""
    proc = subprocess.Popen(
        ["bash", "-o", "pipefail", "-c", _rewrite(cmd.command, ports)],
        cwd=root,
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: a timeout stops all of it
    )
    try:
        out, _ = proc.communicate(timeout=timeout_s)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        code = None
    back = {started: fixed for fixed, started in ports.items()}
    lines = [_rewrite(line, back).rstrip() for line in out.splitlines()]
    return code, [line for line in lines if line.strip()]


def check_block(root: Path, block: Block, lab: Lab | None) -> list[Problem]:
    env = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    ports: dict[int, int] = {}
    if block.variants:
        assert lab is not None
        lab.configure(block.variants, block.env)
        env["LAB_TARGETS"] = ",".join(f"{v}={u}" for v, u in lab.urls.items())
        ports = lab.ports()
    for cmd in block.commands:
        started = time.monotonic()
        code, lines = run_command(root, cmd, block.timeout_s, env, ports)
        took = time.monotonic() - started
        shown = "\n".join(f"    | {line}" for line in lines[-30:]) or "    | (no output)"
        head = cmd.command.splitlines()[0]
        if code is None:
            msg = f"$ {head}: no exit within {block.timeout_s:g} s; its output:\n{shown}"
            return [Problem(block.page, cmd.line, msg)]
        if code != cmd.exit_code:
            msg = f"$ {head}: exit status {code}, expected {cmd.exit_code} ({took:.0f} s):\n{shown}"
            return [Problem(block.page, cmd.line, msg)]
        expected = [text for _, text in cmd.expected]
        bad = match_output(expected, lines)
        if bad is not None:
            line, text = cmd.expected[bad]
            msg = (
                f"$ {head}: output does not match the expected line {text!r}; it printed:\n{shown}"
            )
            return [Problem(block.page, line, msg)]
    return []


def run_blocks(root: Path, selected: Sequence[Block], log: Path | None = None) -> Iterator[Problem]:
    """Run the blocks (one lab for all of them, with every variant any of them needs)."""
    needed = {v for b in selected for v in b.variants}
    with ExitStack() as stack:
        lab = None
        if needed:
            print(
                f"docs-check: starting a native lab ({', '.join(sorted(needed))}) ...",
                file=sys.stderr,
                flush=True,
            )
            lab = stack.enter_context(Lab([v for v in registry.NAMES if v in needed], log))
        for block in selected:
            print(f"docs-check: running {block.where} ...", file=sys.stderr, flush=True)
            yield from check_block(root, block, lab)
            if lab is not None and block.env:
                lab.configure(block.variants, {})
