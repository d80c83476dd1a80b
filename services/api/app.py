"""Build the app for one variant: the shared contract, the variant's endpoints and pools,
and the operational routes (/healthz, /readyz, /metrics, /runtime)."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

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
from .settings import Settings, Variant, settings

# Variant name -> module, as uvicorn maps "h11" -> its protocol module: one interface, many impls.
VARIANTS: dict[str, str] = {
    "sync": "services.api.variants.sync",
    "async": "services.api.variants.async_",
    "offload": "services.api.variants.offload",
    "blocking": "services.api.variants.blocking",
}


async def _call(fn: Callable[..., Any], *args: Any) -> Any:
    """Call a sync or async driver method without blocking the loop."""
    if inspect.iscoroutinefunction(fn):
        return await fn(*args)
    return await run_in_threadpool(fn, *args)


def _pool_stats(app: FastAPI) -> dict[str, Any]:
    executor = getattr(app.state, "executor", None)
    return {
        "db_pool": app.state.db.stats(),
        "executor": executor.stats() if executor else None,
    }


def create_app(variant_name: Variant, s: Settings = settings) -> FastAPI:
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
        checks: dict[str, str] = {}
        for name, probe in (
            ("database", lambda: _call(request.app.state.db.fetchrow, sql.PING)),
            ("upstream", lambda: _call(request.app.state.upstream.ping)),
        ):
            try:
                await asyncio.wait_for(probe(), timeout=s.db_connect_timeout + 1)
                checks[name] = "ok"
            except (LabError, TimeoutError) as exc:
                checks[name] = getattr(exc, "detail", "") or "timed out"
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
