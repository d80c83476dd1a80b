"""The lab's servers as ServerProcess recipes (upstream, API variant, Locust), their ports
and URLs: what the runner starts and what the tests start on free ports."""

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from services import registry
from services.lab.ports import HOST, LOCUST_PORT, UPSTREAM_PORT
from services.lab.procs import ServerProcess

REPO_ROOT = Path(__file__).resolve().parents[2]
LOG_DIR = REPO_ROOT / ".lab" / "logs"
UPSTREAM_URL = f"http://{HOST}:{UPSTREAM_PORT}"
LOCUST_URL = f"http://{HOST}:{LOCUST_PORT}"
# The users and the shapes, so the web UI's class picker offers both (see loadtest/shapes.py).
LOCUSTFILES = "loadtest/locustfile.py,loadtest/shapes.py"
LOCUST_CONF = "loadtest/locust.conf"


def api_url(variant: str) -> str:
    """Base URL of a variant in the native lab (its registry port)."""
    return f"http://{HOST}:{registry.get(variant).port}"


def planned_ports(variants: Sequence[str], locust: bool = True) -> dict[str, int]:
    """Label -> port of every server a run of `variants` binds, for the up-front check."""
    ports = {"upstream": UPSTREAM_PORT, **{f"api-{v}": registry.get(v).port for v in variants}}
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
    port = port or registry.get(variant).port
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


def floor_process(variant: str, port: int, log_dir: Path = LOG_DIR, **env: object) -> ServerProcess:
    """`python -m services.floor VARIANT`: the stack's own floor for a variant (`make
    bench-floor`), with the lab's server flags; env gives DATABASE_URL and UPSTREAM_URL."""
    return ServerProcess(
        name=f"floor-{variant}",
        cmd=[sys.executable, "-m", "services.floor", variant, "--host", HOST, "--port", str(port)],
        env={"UPSTREAM_URL": UPSTREAM_URL, **{k: str(v) for k, v in env.items()}},
        health_url=f"http://{HOST}:{port}/healthz",
        log_path=log_dir / f"floor-{variant}-{port}.log",
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
    targets = targets or {v: api_url(v) for v in registry.NAMES}
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
    """What the runner prints once everything is up: every URL, the DSN, the log folder."""
    rows: list[tuple[str, str]] = []
    if locust:
        locust_row = ("locust", f"{LOCUST_URL}  (pick a variant, a scenario, a shape; Start)")
    else:
        locust_row = ("locust", f"port {LOCUST_PORT} reserved (not started: --no-locust)")
    for variant in variants:
        base = api_url(variant)
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
