"""`python -m tools.reference run [...]` / `python -m tools.reference keys PATH [PATTERN]`."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path

USAGE = (
    "usage: python -m tools.reference run [--help | options]\n"
    "       python -m tools.reference keys PATH [REGEX]   (reference or results folder)\n"
    "       python -m tools.reference fill PAGE...   (TBD<!-- ref: KEY --> -> the value)"
)


def keys(path: Path, pattern: str | None) -> int:
    from tools.reference.keys import keys_of

    try:
        flat = keys_of(path)
    except FileNotFoundError as exc:
        print(f"reference keys: {exc}", file=sys.stderr)
        return 2
    for key, value in flat.items():
        if pattern is None or re.search(pattern, key):
            print(key, json.dumps(value))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["run"]:
        from tools.reference.run import main as run

        return run(args[1:])
    if args[:1] == ["fill"] and len(args) > 1:
        from tools.reference.fill import fill

        return fill(Path.cwd(), [Path(a) for a in args[1:]])
    if args[:1] == ["keys"] and len(args) in (2, 3):
        return keys(Path(args[1]), args[2] if len(args) == 3 else None)
    print(USAGE, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
