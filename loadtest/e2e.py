"""End-to-end check of a running lab (`make e2e` runs it inside the locust container).

A short headless Locust run of the upstream scenario against every variant; passes when every
variant answered with zero failures and throughput orders async > sync > blocking.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
from pathlib import Path

from loadtest.scenarios import SCENARIOS
from loadtest.targets import load_targets

ORDER = ("async", "sync", "blocking")  # expected: strictly decreasing throughput


def run_variant(url: str, users: int, seconds: int, delay_ms: int, out: Path) -> dict[str, float]:
    prefix = out / "run"
    cmd = [
        sys.executable, "-m", "locust", "-f", str(Path(__file__).with_name("locustfile.py")),
        SCENARIOS["upstream"].user_class, "--headless", "--only-summary",
        "-u", str(users), "-r", str(users), "-t", f"{seconds}s", "--stop-timeout", "5",
        "--host", url, "--delay-ms", str(delay_ms), "--csv", str(prefix),
    ]  # fmt: skip
    subprocess.run(cmd, check=False, capture_output=True, timeout=seconds + 60)
    with open(f"{prefix}_stats.csv", newline="") as f:
        row = next(r for r in csv.DictReader(f) if r["Name"] == "Aggregated")
    return {
        "requests": float(row["Request Count"]),
        "failures": float(row["Failure Count"]),
        "rps": float(row["Requests/s"]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--delay-ms", type=int, default=200)
    args = parser.parse_args(argv)
    targets = load_targets()
    results = {}
    for variant in ORDER:
        with tempfile.TemporaryDirectory() as tmp:
            results[variant] = run_variant(
                targets[variant], args.users, args.seconds, args.delay_ms, Path(tmp)
            )
        r = results[variant]
        line = f"{r['rps']:8.1f} req/s {r['requests']:6.0f} requests {r['failures']:.0f} failures"
        print(f"e2e {variant:<9} {targets[variant]:<28} {line}", flush=True)
    problems = [f"{v}: no requests" for v, r in results.items() if r["requests"] == 0]
    problems += [f"{v}: {int(r['failures'])} failures" for v, r in results.items() if r["failures"]]
    rps = [results[v]["rps"] for v in ORDER]
    if not rps[0] > rps[1] > rps[2]:
        problems.append("throughput is not ordered async > sync > blocking")
    print("e2e: FAIL: " + "; ".join(problems) if problems else "e2e: OK", flush=True)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
