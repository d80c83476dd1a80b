"""End-to-end check of a running lab (`make e2e` runs it inside the locust container).

A short headless Locust run of the upstream scenario against every variant; passes when every
variant answered with zero failures and throughput orders async > sync > blocking.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from loadtest.locust_stats import Summary, summarize
from loadtest.scenarios import SCENARIOS
from loadtest.targets import load_targets

ORDER = ("async", "sync", "blocking")  # expected: strictly decreasing throughput
VARIANTS = (*ORDER, "offload")  # every variant must answer without failures


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
    prefix = out / "run"
    cmd = [
        sys.executable, "-m", "locust", "-f", str(Path(__file__).with_name("locustfile.py")),
        SCENARIOS["upstream"].user_class, "--headless", "--only-summary",
        "-u", str(users), "-r", str(users), "-t", f"{seconds}s", "--stop-timeout", "5",
        "--host", url, "--delay-ms", str(delay_ms), "--json-file", str(prefix),
    ]  # fmt: skip
    try:
        proc = subprocess.run(
            cmd, check=False, capture_output=True, text=True, timeout=seconds + 60
        )
    except subprocess.TimeoutExpired as exc:  # Locust did not stop: report, don't crash
        print(f"locust did not stop: {exc}", file=sys.stderr, flush=True)
        return summarize(Path(f"{prefix}.json"))
    summary = summarize(Path(f"{prefix}.json"))  # Locust's final numbers (its csv lags)
    if not summary.requests:
        print(proc.stderr[-3000:], file=sys.stderr, flush=True)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--delay-ms", type=int, default=200)
    args = parser.parse_args(argv)
    targets = load_targets()
    for variant in VARIANTS:
        if (answer := wait_ready(targets[variant], 120)) is not None:
            print(f"e2e: FAIL: {variant} not ready after 120 s: {answer}", flush=True)
            return 1
    results: dict[str, Summary] = {}
    for variant in VARIANTS:
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
