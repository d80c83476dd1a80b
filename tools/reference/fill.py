"""`python -m tools.reference fill PAGE...`: write the committed reference's value over every
`TBD<!-- ref: KEY -->` in the pages (the way a writer quotes a number before the run exists).
Only TBDs are touched: a number already quoted is the docs check's to judge, not ours."""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

from tools.docs_check.refs import UNITS, load_reference

TBD = re.compile(
    rf"TBD(?P<gap>[ \u00a0]?(?:{UNITS})?[*_]{{0,2}}[ \u00a0]?)<!--\s*ref:\s*(?P<key>[^\s>]+)\s*-->"
)


def decimals(key: str, value: float) -> int:
    """As many decimals as a reader needs: ratios 1, small numbers 1, the rest none."""
    if ".ratio." in key:
        return 2 if abs(value) < 1 else 1
    return 1 if abs(value) < 10 and value != int(value) else 0


def formatted(key: str, value: float) -> str:
    places = Decimal(1).scaleb(-decimals(key, value))
    return str(Decimal(str(value)).quantize(places, ROUND_HALF_UP))


def fill(root: Path, pages: Sequence[Path]) -> int:
    loaded = load_reference(root)
    if isinstance(loaded, str):
        print(f"reference fill: {loaded}", file=sys.stderr)
        return 2
    _, reference = loaded
    missing: list[str] = []
    for page in pages:
        text = page.read_text()

        def value(m: re.Match[str], page: Path = page) -> str:
            key = m["key"]
            if not isinstance(reference.get(key), int | float):
                missing.append(f"{page}: {key}")
                return m[0]
            return f"{formatted(key, float(reference[key]))}{m['gap']}<!-- ref: {key} -->"

        new = TBD.sub(value, text)
        if new != text:
            page.write_text(new)
    for line in missing:
        print(f"reference fill: no number for {line}", file=sys.stderr)
    return 1 if missing else 0
