"""Parse the arguments shared by `python -m loadtest.compare` and `python -m loadtest.capacity`.

Destinations are named as the fields of orchestrate/run.py's Load (duration_s, warmup_s, ...),
so the parsed arguments become one Load without copying them field by field.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from loadtest.generator import open_loop
from loadtest.generator.scenarios import SCENARIOS
from services.registry import NAMES as VARIANTS

_SPAN = re.compile(r"(\d+)(h|m|s)")
_SECONDS = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m)?")


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


def seconds(value: str) -> float:
    """A duration finer than Locust's whole seconds (bench-floor's slices), in seconds: "1s",
    "0.3s", "300ms", "2m" or a bare number (seconds)."""
    match = _SECONDS.fullmatch(value.strip().lower())
    if not match:
        raise argparse.ArgumentTypeError(f"expected a duration like 1s or 300ms, got {value!r}")
    return float(match[1]) * {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}[match[2]]


def positive_seconds(value: str) -> float:
    if (s := seconds(value)) <= 0:
        raise argparse.ArgumentTypeError("must be more than 0s")
    return s


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


def _using(option: str) -> str:
    return ", ".join(s.name for s in SCENARIOS.values() if option in s.options)


def add_common_arguments(p: argparse.ArgumentParser) -> None:
    """The options both commands take, with the same names, meanings and defaults."""
    p.add_argument(
        "--scenarios",
        type=scenario_list,
        default=["upstream"],
        help=f"comma-separated, from {','.join(SCENARIOS)} (default: upstream)",
    )
    p.add_argument(
        "--variants",
        type=variant_list,
        default=list(VARIANTS),
        help=f"comma-separated subset of {','.join(VARIANTS)} (default: all)",
    )
    p.add_argument(
        "--delay-ms",
        type=int,
        default=200,
        help=f"delay of each slow call ({_using('delay_ms')}) (default: 200)",
    )
    p.add_argument(
        "--work", type=int, default=20, help=f"CPU work units ({_using('work')}) (default: 20)"
    )
    p.add_argument(
        "--targets",
        default=None,
        help="variant=url,... or one URL with {variant}, as LAB_TARGETS "
        "(default: $LAB_TARGETS, else the native lab's ports)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("results"),
        help="parent folder of the results/<timestamp>/ folder (default: results)",
    )
    p.add_argument(
        "--stop-timeout",
        dest="stop_timeout_s",
        metavar="DURATION",
        type=duration,
        default=5,
        help="Locust's --stop-timeout: how long requests in flight at the end may "
        "still finish and be recorded (default: 5s)",
    )
    p.add_argument(
        "--drain-timeout",
        dest="drain_timeout_s",
        metavar="DURATION",
        type=duration,
        default=60,
        help="longest wait for a target to finish earlier requests (default: 60s)",
    )


def positive_rate(value: str) -> float:
    try:
        rate = float(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected requests per second, got {value!r}") from exc
    if not 0 < rate < float("inf"):
        raise argparse.ArgumentTypeError("must be a positive number of requests per second")
    return rate


def rate_list(value: str) -> list[float]:
    rates = sorted({positive_rate(part) for part in value.split(",") if part.strip()})
    if not rates:
        raise argparse.ArgumentTypeError(f"expected rates like 10,20,50, got {value!r}")
    return rates


def add_open_loop_arguments(p: argparse.ArgumentParser) -> None:
    """The open loop's knobs besides its rate (generator/open_loop.py)."""
    p.add_argument(
        "--arrivals",
        choices=open_loop.ARRIVAL_KINDS,
        default="poisson",
        help="open loop's schedule: poisson (independent arrivals, random gaps of mean 1/rate) "
        "or fixed (one every 1/rate s) (default: poisson)",
    )
    p.add_argument(
        "--max-in-flight",
        type=int,
        default=open_loop.DEFAULT_MAX_IN_FLIGHT,
        help="open loop: most requests in flight at once, to bound the generator's memory; an "
        f"arrival beyond it is dropped and counted as a failure (default: "
        f"{open_loop.DEFAULT_MAX_IN_FLIGHT})",
    )
