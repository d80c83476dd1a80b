"""`python -m services.lab` (`make lab`): the whole lab natively, without containers.

Starts PostgreSQL (embedded unless DATABASE_URL is set), the mock upstream, the API variants
and the Locust web UI (unless --no-locust), prints their URLs and waits; Ctrl-C, SIGTERM or
SIGHUP stops everything.
The current environment is passed to every server, so e.g. `THREADPOOL_TOKENS=10 make lab`
reaches all variants.
"""

import argparse
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from types import FrameType

from services.lab.netcheck import PortBusyError, ensure_ports_free
from services.lab.ports import API_PORTS, HOST, LOCUST_PORT, UPSTREAM_PORT, VARIANTS
from services.lab.postgres import database
from services.lab.procs import ServerError, ServerProcess, Supervisor

REPO_ROOT = Path(__file__).resolve().parents[2]
LOG_DIR = REPO_ROOT / ".lab" / "logs"
UPSTREAM_URL = f"http://{HOST}:{UPSTREAM_PORT}"
LOCUST_URL = f"http://{HOST}:{LOCUST_PORT}"
# The users and the shapes, so the web UI's class picker offers both (see loadtest/shapes.py).
LOCUSTFILES = "loadtest/locustfile.py,loadtest/shapes.py"
LOCUST_CONF = "loadtest/locust.conf"
# Generous: on 2 cores four Python servers (some forking gunicorn workers) boot at once.
HEALTH_TIMEOUT = 60.0
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m services.lab", description="Run the concurrency lab natively."
    )
    parser.add_argument(
        "--variants",
        type=_variant_list,
        default=list(VARIANTS),
        help=f"comma-separated subset of {','.join(VARIANTS)} (default: all)",
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
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown variant(s) {', '.join(unknown) or '(none given)'}; "
            f"choose from {','.join(VARIANTS)}"
        )
    # Keep the canonical order so the table always reads the same.
    return [name for name in VARIANTS if name in names]


def planned_ports(variants: Sequence[str], locust: bool = True) -> dict[str, int]:
    ports = {"upstream": UPSTREAM_PORT, **{f"api-{v}": API_PORTS[v] for v in variants}}
    return {**ports, "locust": LOCUST_PORT} if locust else ports


def upstream_process(
    port: int = UPSTREAM_PORT, log_dir: Path = LOG_DIR, **env: object
) -> ServerProcess:
    """`python -m services.upstream` on `port`; env adds MOCK_* settings."""
    return ServerProcess(
        name="upstream",
        cmd=[sys.executable, "-m", "services.upstream"],
        env={"MOCK_HOST": HOST, "MOCK_PORT": str(port), **{k: str(v) for k, v in env.items()}},
        health_url=f"http://{HOST}:{port}/healthz",
        log_path=log_dir / f"upstream-{port}.log",
        cwd=REPO_ROOT,
    )


def api_process(
    variant: str, port: int | None = None, log_dir: Path = LOG_DIR, **env: object
) -> ServerProcess:
    """`python -m services.api` for one variant (on its lab port by default); env adds settings."""
    port = port or API_PORTS[variant]
    return ServerProcess(
        name=f"api-{variant}",
        cmd=[sys.executable, "-m", "services.api"],
        env={
            "API_VARIANT": variant,
            "API_HOST": HOST,
            "API_PORT": str(port),
            "UPSTREAM_URL": UPSTREAM_URL,
            **{k: str(v) for k, v in env.items()},
        },
        health_url=f"http://{HOST}:{port}/healthz",
        log_path=log_dir / f"api-{variant}-{port}.log",
        cwd=REPO_ROOT,
    )


def locust_process(
    port: int = LOCUST_PORT,
    log_dir: Path = LOG_DIR,
    targets: Mapping[str, str] | None = None,
    variant: str = "async",
) -> ServerProcess:
    """The Locust web UI (users + shapes, class picker on) on `port`; `targets` (variant -> URL,
    default: the lab's own ports) becomes its LAB_TARGETS, so the variant dropdown reaches this
    lab whatever LAB_TARGETS the shell has; `variant` is the dropdown's initial choice."""
    targets = targets or {v: f"http://{HOST}:{p}" for v, p in API_PORTS.items()}
    cmd = [
        sys.executable, "-m", "locust", "--config", LOCUST_CONF, "-f", LOCUSTFILES,
        "--class-picker", "--web-host", HOST, "--web-port", str(port), "--variant", variant,
    ]  # fmt: skip
    return ServerProcess(
        name="locust",
        cmd=cmd,
        env={"LAB_TARGETS": ",".join(f"{v}={url}" for v, url in targets.items())},
        health_url=f"http://{HOST}:{port}/",
        log_path=log_dir / f"locust-{port}.log",
        cwd=REPO_ROOT,  # the locustfiles import loadtest.* and services.* from the repository
    )


def url_table(variants: Sequence[str], dsn: str, locust: bool = False) -> str:
    rows: list[tuple[str, str]] = []
    if locust:
        locust_row = ("locust", f"{LOCUST_URL}  (pick a variant, a scenario, a shape; Start)")
    else:
        locust_row = ("locust", f"port {LOCUST_PORT} reserved (not started: --no-locust)")
    for variant in variants:
        base = f"http://{HOST}:{API_PORTS[variant]}"
        rows.append((f"api {variant}", f"{base}/docs"))
        rows.extend(("", f"{base}/{path}") for path in ("runtime", "metrics"))
    rows += [
        ("upstream", UPSTREAM_URL),
        ("database", dsn),
        locust_row,
        ("logs", str(LOG_DIR.relative_to(REPO_ROOT)) + "/"),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"  {name:<{width}}  {value}" for name, value in rows]
    return "\n".join(["", "FastAPI concurrency lab is up:", *lines, "", "Ctrl-C stops it.", ""])


def run(variants: Sequence[str], locust: bool = True) -> None:
    """Start everything and block until interrupted; teardown happens in reverse order."""
    with ExitStack() as stack:
        try:
            print("lab: starting PostgreSQL ...", flush=True)
            dsn = stack.enter_context(database())
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
