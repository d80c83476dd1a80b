"""Check a running lab end to end (`make e2e` runs it inside the locust container).

A short headless Locust run of the upstream scenario against every variant of the registry;
passes when every variant answered with zero failures and throughput orders async > sync >
blocking (the three concurrency models whose order Little's law makes certain).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import httpx

from loadtest.analysis.locust_stats import Summary
from loadtest.generator.scenarios import SCENARIOS
from loadtest.generator.targets import NAMES, load_targets
from loadtest.orchestrate.run import Load, RunSpec, run_locust

ORDER = ("async", "sync", "blocking")  # expected: strictly decreasing throughput


def wait_ready(url: str, seconds: float) -> str | None:
    """Poll /readyz (database and upstream reachable) until 200; the last answer if never.
    Right after `up`, the container network's DNS and the pools may still be warming up."""
    deadline, last = time.monotonic() + seconds, "no answer"
    while time.monotonic() < deadline:
        try:
            response = httpx.get(f"{url}/readyz", timeout=5)
            if response.status_code == 200:
                return None
            last = response.text
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(1)
    return last


def run_variant(url: str, users: int, seconds: int, delay_ms: int, out: Path) -> Summary:
    load = Load(users=users, spawn_rate=users, duration_s=seconds, delay_ms=delay_ms)
    outcome = run_locust(RunSpec(SCENARIOS["upstream"], url, load, out / "run"), monitor=False)
    if outcome.timed_out:  # Locust did not stop: report, don't crash
        print("locust did not stop and was terminated", file=sys.stderr, flush=True)
    if not outcome.summary.requests:
        print(outcome.log_text[-3000:], file=sys.stderr, flush=True)
    return outcome.summary  # Locust's final numbers (its csv lags)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.e2e", description=__doc__)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--delay-ms", type=int, default=200)
    args = parser.parse_args(argv)
    targets = load_targets()
    for variant in NAMES:
        if (answer := wait_ready(targets[variant], 120)) is not None:
            print(f"e2e: FAIL: {variant} not ready after 120 s: {answer}", flush=True)
            return 1
    results: dict[str, Summary] = {}
    for variant in NAMES:
        with tempfile.TemporaryDirectory() as tmp:
            results[variant] = r = run_variant(
                targets[variant], args.users, args.seconds, args.delay_ms, Path(tmp)
            )
        line = f"{r.rps or 0:8.1f} req/s {r.requests:6d} requests {r.failures} failures"
        print(f"e2e {variant:<9} {targets[variant]:<28} {line}", flush=True)
    problems = [f"{v}: no requests" for v, r in results.items() if not r.requests]
    problems += [f"{v}: {r.failures} failures" for v, r in results.items() if r.failures]
    rps = [results[v].rps or 0.0 for v in ORDER]
    if not rps[0] > rps[1] > rps[2]:
        problems.append("throughput is not ordered async > sync > blocking")
    print("e2e: FAIL: " + "; ".join(problems) if problems else "e2e: OK", flush=True)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
