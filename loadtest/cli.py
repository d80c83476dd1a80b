"""Argument types shared by `python -m loadtest.compare` and `python -m loadtest.capacity`."""

from __future__ import annotations

import argparse
import re

from loadtest.scenarios import SCENARIOS
from services.lab.ports import VARIANTS

_SPAN = re.compile(r"(\d+)(h|m|s)")


def duration(value: str) -> int:
    """Locust's time format ("30s", "1m30s", "2m"; a bare number is seconds) -> seconds."""
    text = value.strip().lower()
    if text.isdigit():
        return int(text)
    parts = _SPAN.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise argparse.ArgumentTypeError(f"expected a duration like 30s or 1m30s, got {value!r}")
    return sum(int(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)


def positive_duration(value: str) -> int:
    seconds = duration(value)
    if seconds < 1:
        raise argparse.ArgumentTypeError("must be at least 1s")
    return seconds


def scenario_list(value: str) -> list[str]:
    return _names(value, list(SCENARIOS), "scenario")


def variant_list(value: str) -> list[str]:
    # The canonical order, whatever the order given: tables always read the same.
    names = _names(value, list(VARIANTS), "variant")
    return [v for v in VARIANTS if v in names]


def int_list(value: str) -> list[int]:
    try:
        numbers = sorted({int(part) for part in value.split(",") if part.strip()})
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected numbers like 1,2,5, got {value!r}") from exc
    if not numbers or numbers[0] < 1:
        raise argparse.ArgumentTypeError("expected positive numbers")
    return numbers


def _names(value: str, known: list[str], kind: str) -> list[str]:
    names = list(dict.fromkeys(n.strip() for n in value.split(",") if n.strip()))
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown {kind}(s) {', '.join(unknown) or '(none given)'}; choose from "
            + ",".join(known)
        )
    return names
