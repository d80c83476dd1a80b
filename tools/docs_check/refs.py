"""Numbers quoted from the reference results equal them (so the docs cannot drift from a run).

A quoted number is written immediately followed by an HTML comment naming its key in the
current reference's reference.json (invisible on GitHub):

    async served 892 req/s<!-- ref: compare.upstream.async.rps -->
    4.5x<!-- ref: compare.upstream.ratio.async/sync -->

QUOTE below is the whole syntax: a number (digits, optional `,` thousands groups, optional
decimals, optional sign), then optionally one space and a unit, then optionally a closing `*` or
`_` (emphasis), then optionally one space, then `<!-- ref: KEY -->`. The number must equal the
value rounded half-up to as many decimals as the number is written with: 892 quotes 892.3,
4.5 quotes 4.46, 1,000 quotes 999.7. A marker with no number right before it is an error too.
The current reference is the folder named by the line `Current reference: <folder>` of
docs/results/README.md; its reference.json is flat: {"compare.upstream.async.rps": 892.3, ...}.
"""

from __future__ import annotations

import difflib
import json
import re
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from tools.docs_check.markdown import Problem, line_of, prose

UNITS = r"req/s|rps|ms|s|%|x|\u00d7|GiB|MiB|MB|KiB|cores?|users?|tokens?"
QUOTE = re.compile(
    r"(?<![\w.,])(?P<number>[-\u2212]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?)"
    rf"(?:[ \u00a0]?(?P<unit>{UNITS}))?[*_]{{0,2}}[ \u00a0]?"
    r"<!--\s*ref:\s*(?P<key>[^\s>]+)\s*-->"
)
MARKER = re.compile(r"<!--\s*ref:\s*(?P<key>[^\s>]*)\s*-->")
CURRENT = re.compile(r"^Current reference:\s*\[?`?(?P<dir>[^\s`\]/]+)/?`?\]?", re.M)
INDEX = Path("docs/results/README.md")


def current_reference(root: Path) -> Path | None:
    """The folder docs/results/README.md names as current (relative to root), if any."""
    index = root / INDEX
    if not index.is_file():
        return None
    m = CURRENT.search(index.read_text())
    if not m or m["dir"].lower().startswith(("none", "(none")):
        return None
    return INDEX.parent / m["dir"]


def load_reference(root: Path) -> tuple[Path, dict[str, Any]] | str:
    """(folder, reference.json) of the current reference, or why there is none."""
    folder = current_reference(root)
    if folder is None:
        return f"{INDEX} names no current reference (a line `Current reference: <folder>`)"
    path = root / folder / "reference.json"
    if not path.is_file():
        return f"{path.relative_to(root)}: no such file (named by {INDEX}); run `make reference`"
    data: dict[str, Any] = json.loads(path.read_text())
    return folder, data


def matches(quoted: str, value: float) -> bool:
    """True when `value`, rounded half-up to the decimals of `quoted`, is `quoted`."""
    number = Decimal(quoted.replace(",", "").replace("\u2212", "-"))
    exponent = number.as_tuple().exponent
    assert isinstance(exponent, int)
    return Decimal(str(value)).quantize(Decimal(1).scaleb(exponent), ROUND_HALF_UP) == number


def check_refs(root: Path, page: Path) -> list[Problem]:
    text = prose((root / page).read_text())
    quotes = {m.start("key"): m for m in QUOTE.finditer(text)}
    markers = list(MARKER.finditer(text))
    if not markers:
        return []
    reference = load_reference(root)
    problems = []
    for marker in markers:
        line = line_of(text, marker.start())
        key = marker["key"]
        quote = quotes.get(marker.start("key"))
        if quote is None:
            problems.append(Problem(page, line, f"ref {key}: no number right before the marker"))
            continue
        if isinstance(reference, str):
            problems.append(Problem(page, line, f"ref {key}: {reference}"))
            continue
        folder, values = reference
        shown = quote[0].split("<!--", 1)[0].rstrip(" \u00a0*_")  # as written: "4.5x"
        if key not in values:
            close = difflib.get_close_matches(key, list(values), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            message = f"{shown} quotes {key}: no such key in {folder}/reference.json{hint}"
            problems.append(Problem(page, line, message))
            continue
        value = values[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            problems.append(Problem(page, line, f"{shown} quotes {key} = {value!r}: not a number"))
        elif not matches(quote["number"], value):
            problems.append(
                Problem(
                    page,
                    line,
                    f"{shown} quotes {key}, but {folder}/reference.json has {value}",
                )
            )
    return problems
