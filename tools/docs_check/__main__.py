"""`python -m tools.docs_check` (`make docs-check`): exit 1 and name file:line of every problem."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from tools.docs_check.blocks import Block, blocks, run_blocks
from tools.docs_check.markdown import Problem, check_line_links, check_links, pages
from tools.docs_check.names import check_names
from tools.docs_check.refs import check_refs

ROOT = Path(__file__).resolve().parents[2]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m tools.docs_check",
        description="Check README.md and docs/**/*.md: links and anchors, named files, modules, "
        "functions and make targets, quoted reference numbers, checkable command blocks.",
    )
    p.add_argument(
        "pages",
        nargs="*",
        type=Path,
        help="only these pages (default: README.md and docs/**/*.md); "
        "PAGE:LINE runs only the checkable block opening at that line",
    )
    p.add_argument("--root", type=Path, default=ROOT, help="the repository (default: this one)")
    p.add_argument("--list", action="store_true", help="list the checkable blocks and exit")
    p.add_argument(
        "--no-blocks", action="store_true", help="skip running the checkable blocks (no lab)"
    )
    p.add_argument("--lab-logs", type=Path, help="keep the lab's server logs in this folder")
    return p.parse_args(argv)


def _selection(root: Path, given: Sequence[Path]) -> tuple[list[Path], dict[Path, set[int]]]:
    """Pages to check (relative to root) and, per page, the block lines asked for (empty: all)."""
    if not given:
        return pages(root), {}
    chosen: list[Path] = []
    lines: dict[Path, set[int]] = {}
    for arg in given:
        name, _, line = str(arg).partition(":")
        path = Path(name)
        path = path.resolve().relative_to(root) if path.is_absolute() else path
        if not (root / path).is_file():
            raise SystemExit(f"docs-check: {path}: no such page under {root}")
        if path not in chosen:
            chosen.append(path)
        if line:
            lines.setdefault(path, set()).add(int(line))
    return chosen, lines


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    root = args.root.resolve()
    chosen, only_lines = _selection(root, args.pages)
    problems: list[Problem] = []
    selected: list[Block] = []
    for page in chosen:
        found, bad = blocks(root, page)
        problems += bad
        wanted = only_lines.get(page)
        selected += [b for b in found if not wanted or b.line in wanted]
    if args.list:
        for b in selected:
            lab = "no lab" if not b.variants else "lab " + ",".join(b.variants)
            env = " " + " ".join(f"{k}={v}" for k, v in b.env.items()) if b.env else ""
            print(f"{b.where}  ({lab}{env}) $ {b.commands[0].command.splitlines()[0]}")
        return 0
    for page in chosen:
        problems += check_links(root, page) + check_line_links(root, page)
        problems += check_names(root, page) + check_refs(root, page)
    for problem in problems:
        print(problem, file=sys.stderr)
    if not args.no_blocks and selected:
        for problem in run_blocks(root, selected, args.lab_logs):
            problems.append(problem)
            print(problem, file=sys.stderr, flush=True)
    ran = "" if args.no_blocks else f", {len(selected)} checkable block(s) run"
    summary = f"docs-check: {len(chosen)} page(s){ran}"
    if problems:
        print(f"{summary}: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"{summary}: ok", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
