"""`python -m services.lab` (`make lab`): the whole lab natively, without containers.

Starts PostgreSQL (embedded unless DATABASE_URL is set), the mock upstream, the API variants
and the Locust web UI (unless --no-locust), prints their URLs and waits; Ctrl-C, SIGTERM or
SIGHUP stops everything.
The current environment is passed to every server, so e.g. `THREADPOOL_TOKENS=10 make lab`
reaches all variants.
"""

import argparse
import os
import signal
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack
from types import FrameType

from services import registry
from services.lab.netcheck import PortBusyError, ServerError, ensure_ports_free
from services.lab.ports import HOST, LOCUST_PORT
from services.lab.postgres import database
from services.lab.processes import (
    api_process,
    locust_process,
    planned_ports,
    upstream_process,
    url_table,
)
from services.lab.procs import Supervisor

# Generous: on 2 cores every variant's server (some forking gunicorn workers) boots at once.
HEALTH_TIMEOUT = 60.0
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m services.lab", description="Run the concurrency lab natively."
    )
    parser.add_argument(
        "--variants",
        type=_variant_list,
        default=list(registry.NAMES),
        help=f"comma-separated subset of {','.join(registry.NAMES)} (default: all)",
    )
    parser.add_argument(
        "--no-locust",
        dest="locust",
        action="store_false",
        help=f"do not start the Locust web UI on port {LOCUST_PORT}",
    )
    return parser.parse_args(argv)


def _variant_list(value: str) -> list[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = sorted(set(names) - set(registry.NAMES))
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown variant(s) {', '.join(unknown) or '(none given)'}; "
            f"choose from {','.join(registry.NAMES)}"
        )
    # Keep the registry's order so the table always reads the same.
    return [name for name in registry.NAMES if name in names]


def run(variants: Sequence[str], locust: bool = True) -> None:
    """Start everything and block until interrupted; teardown happens in reverse order."""
    with ExitStack() as stack:
        try:
            print("lab: starting PostgreSQL ...", flush=True)
            dsn = stack.enter_context(database(external_url=os.environ.get("DATABASE_URL")))
            supervisor = stack.enter_context(Supervisor())
            print("lab: starting upstream ...", flush=True)
            supervisor.start(upstream_process(), health_timeout=HEALTH_TIMEOUT)
            print(f"lab: starting API variants: {', '.join(variants)} ...", flush=True)
            apis = [api_process(v, DATABASE_URL=dsn) for v in variants]
            supervisor.start(*apis, health_timeout=HEALTH_TIMEOUT)
            if locust:
                print("lab: starting Locust ...", flush=True)
                first = "async" if "async" in variants else variants[0]
                supervisor.start(locust_process(variant=first), health_timeout=HEALTH_TIMEOUT)
            print(url_table(variants, dsn, locust), flush=True)
            while True:
                time.sleep(0.5)
                supervisor.check()
        finally:
            # Runs before the stack unwinds: whatever ended the run, the teardown itself
            # must not be interrupted by another signal.
            _ignore_stop_signals()


def _ignore_stop_signals() -> None:
    for sig in _STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def _on_stop_signal(signum: int, frame: FrameType | None) -> None:
    # Ignore repeats: a second Ctrl-C must not cut the teardown short and leave orphans.
    _ignore_stop_signals()
    print(f"\nlab: {signal.Signals(signum).name} received, stopping ...", file=sys.stderr)
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        # Checked up front: a server failing to bind later would only show up in its log.
        ensure_ports_free(planned_ports(args.variants, args.locust), HOST)
    except PortBusyError as exc:
        print(f"lab: {exc}", file=sys.stderr)
        return 2
    previous = {sig: signal.signal(sig, _on_stop_signal) for sig in _STOP_SIGNALS}
    try:
        run(args.variants, args.locust)
    except KeyboardInterrupt:
        print("lab: stopped", file=sys.stderr)
        return 0
    except ServerError as exc:
        print(f"lab: {exc}", file=sys.stderr)
        return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
