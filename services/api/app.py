"""Build the app for one variant: the shared contract, the variant's endpoints and pools,
and the operational routes (/healthz, /readyz, /metrics, /runtime)."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from . import sql
from .contract import build_router
from .errors import LabError, install_error_handlers
from .metrics import (
    LAG_WINDOW_S,
    Live,
    MetricsMiddleware,
    lag_probe,
    prometheus_text,
    threadpool_stats,
)
from .schemas import Health, Readiness
from .settings import Variant, settings

# Variant name -> module, as uvicorn maps "h11" -> its protocol module: one interface, many impls.
VARIANTS: dict[str, str] = {
    "sync": "services.api.variants.sync",
    "async": "services.api.variants.async_",
    "offload": "services.api.variants.offload",
    "blocking": "services.api.variants.blocking",
}


# Readiness probes of the sync drivers get threads of their own: under load the 40 request
# tokens are all taken, and a probe queued behind them would report a healthy database as down.
_PROBE_THREADS = anyio.CapacityLimiter(2)


async def _call(fn: Callable[..., Any], *args: Any) -> Any:
    """Call a sync or async driver method without blocking the loop."""
    if inspect.iscoroutinefunction(fn):
        return await fn(*args)
    return await anyio.to_thread.run_sync(lambda: fn(*args), limiter=_PROBE_THREADS)


async def _check(probe: Awaitable[Any], seconds: float) -> str:
    try:
        await asyncio.wait_for(probe, seconds)
    except LabError as exc:
        return exc.detail
    except TimeoutError:
        return f"no answer within {seconds:g} s"
    except Exception as exc:  # readiness must answer, whatever the dependency did
        return f"{type(exc).__name__}: {exc}"
    return "ok"


def _available_cpus() -> float:
    """CPUs this process may use: its affinity, capped by a cgroup v2 quota (a container's
    `cpus:` limit), so a load generator elsewhere can compute this server's ceilings."""
    cpus = float(len(os.sched_getaffinity(0)))
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cpus = min(cpus, int(quota) / int(period))
    except (OSError, ValueError):
        pass
    return cpus


def _pool_stats(app: FastAPI) -> dict[str, Any]:
    executor = getattr(app.state, "executor", None)
    return {
        "db_pool": app.state.db.stats(),
        "executor": executor.stats() if executor else None,
    }


def create_app(variant_name: Variant) -> FastAPI:
    s = settings  # the variants' modules read the same object
    variant = importlib.import_module(VARIANTS[variant_name])
    live = Live()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Only possible inside the loop (at import time AnyIO raises NoEventLoopError), and
        # loop.set_default_executor() would not change it: FastAPI's threadpool is this limiter.
        anyio.to_thread.current_default_thread_limiter().total_tokens = s.threadpool_tokens
        async with variant.resources() as resources:
            for name, resource in resources.items():
                setattr(app.state, name, resource)
            async with lag_probe(live, s.loop_lag_interval, lambda: _pool_stats(app)):
                yield

    app = FastAPI(
        title=f"FastAPI concurrency lab: {variant_name}",
        description=inspect.cleandoc(variant.__doc__ or ""),
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.add_middleware(MetricsMiddleware, live=live)
    app.include_router(build_router(variant))

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> Health:
        return Health(status="ok")

    @app.get("/readyz", tags=["ops"], responses={503: {"model": Readiness}})
    async def readyz(request: Request) -> Any:
        state = request.app.state
        database, upstream = await asyncio.gather(
            _check(_call(state.db.fetchrow, sql.PING), s.db_acquire_timeout + s.db_connect_timeout),
            _check(_call(state.upstream.ping), s.upstream_timeout),
        )
        checks = {"database": database, "upstream": upstream}
        ready = all(v == "ok" for v in checks.values())
        body = Readiness(status="ready" if ready else "not ready", checks=checks)
        return JSONResponse(body.model_dump(), status_code=200 if ready else 503)

    @app.get("/metrics", tags=["ops"], response_class=Response)
    async def metrics() -> Response:
        body, content_type = prometheus_text()
        return Response(body, media_type=content_type)

    @app.get("/runtime", tags=["ops"])
    async def runtime(request: Request) -> dict[str, Any]:
        """What a trainer puts on screen: this process's live numbers and the settings in force."""
        return {
            "variant": variant_name,
            "description": (variant.__doc__ or "").strip().splitlines()[0],
            "pid": os.getpid(),
            "cpus": _available_cpus(),
            "server": s.api_server,
            "loop": type(asyncio.get_running_loop()).__module__.split(".")[0],
            "uptime_s": round(time.time() - live.started, 1),
            "in_flight": live.in_flight,
            "loop_lag_ms": round(live.lag_s * 1000, 1),
            "loop_lag_max_ms": round(live.lag_max_s() * 1000, 1),
            "loop_lag_window_s": LAG_WINDOW_S,
            "threadpool": threadpool_stats(),
            **_pool_stats(request.app),
            "settings": s.public(),
        }

    return app
