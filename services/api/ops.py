"""The operational routes every variant shares: /healthz, /readyz, /metrics, /runtime."""

from __future__ import annotations

import asyncio
import inspect
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.to_thread
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse

from services import registry

from .burn import CPU_UNIT_MS
from .errors import LabError
from .metrics import LAG_WINDOW_S, Live, prometheus_text, refresh_gauges, threadpool_stats
from .process import available_cpus
from .schemas import Health, Readiness
from .settings import Settings
from .shared import MIXED_ITEM_ID, MIXED_WORK

# Readiness probes of the sync drivers get threads of their own: under load the 40 request
# tokens are all taken, and a probe queued behind them would report a healthy database as down.
# For the same reason the database probe (db.ping) opens a connection of its own instead of
# queueing for one of the pool's, with either driver.
_PROBE_THREADS = anyio.CapacityLimiter(2)


async def _call(fn: Callable[..., Any], *args: Any) -> Any:
    """Call a sync or async driver method without blocking the loop."""
    if inspect.iscoroutinefunction(fn):
        return await fn(*args)
    return await anyio.to_thread.run_sync(lambda: fn(*args), limiter=_PROBE_THREADS)


async def _check(probe: Awaitable[Any], seconds: float) -> str:
    """ "ok", or why not: a check passes when its text starts with "ok"."""
    try:
        await asyncio.wait_for(probe, seconds)
    except LabError as exc:
        return exc.detail
    except TimeoutError:
        return f"no answer within {seconds:g} s"
    except Exception as exc:  # readiness must answer, whatever the dependency did
        return f"{type(exc).__name__}: {exc}"
    return "ok"


def _passed(check: str) -> bool:
    return check == "ok" or check.startswith("ok (")


def _pool_note(database: str, pool: dict[str, int]) -> str:
    """A reachable database whose pool is full is still ready (more instances would help, not
    fewer), but say so: requests are queueing for a connection (DB_POOL_MAX)."""
    if database != "ok" or pool["in_use"] < pool["max"]:
        return database
    return f"ok (pool busy: {pool['in_use']}/{pool['max']} in use, {pool['waiting']} waiting)"


def pool_stats(app: FastAPI) -> dict[str, Any]:
    executor = getattr(app.state, "executor", None)
    return {
        "db_pool": app.state.db.stats(),
        "executor": executor.stats() if executor else None,
    }


def ops_router(s: Settings, live: Live, description: str) -> APIRouter:
    router = APIRouter(tags=["ops"])

    @router.get("/healthz")
    async def healthz() -> Health:
        return Health(status="ok")

    @router.get("/readyz", responses={503: {"model": Readiness}})
    async def readyz(request: Request) -> Any:
        state = request.app.state
        database, upstream = await asyncio.gather(
            _check(_call(state.db.ping), s.db_connect_timeout + 1),
            _check(_call(state.upstream.ping), s.upstream_timeout),
        )
        checks = {"database": _pool_note(database, state.db.stats()), "upstream": upstream}
        ready = all(_passed(v) for v in checks.values())
        body = Readiness(status="ready" if ready else "not ready", checks=checks)
        return JSONResponse(body.model_dump(), status_code=200 if ready else 503)

    @router.get("/metrics", response_class=Response)
    async def metrics(request: Request) -> Response:
        refresh_gauges(live, pool_stats(request.app))  # this process's, as of now
        body, content_type = prometheus_text(multiprocess=s.prometheus_multiproc_dir is not None)
        return Response(body, media_type=content_type)

    @router.get("/runtime")
    async def runtime(request: Request) -> dict[str, Any]:
        """What a trainer puts on screen: this process's live numbers and the settings in force."""
        return {
            "variant": s.api_variant,
            "description": description,
            "pid": os.getpid(),
            "cpus": available_cpus(),
            "server": s.api_server,
            "loop": type(asyncio.get_running_loop()).__module__.split(".")[0],
            "uptime_s": round(time.time() - live.started, 1),
            "in_flight": live.in_flight,
            "loop_lag_ms": round(live.lag_now_s(asyncio.get_running_loop().time()) * 1000, 1),
            "loop_lag_max_ms": round(live.lag_max_s() * 1000, 1),
            "loop_lag_window_s": LAG_WINDOW_S,
            "threadpool": threadpool_stats(),
            "process": live.process.usage().as_dict(),
            **pool_stats(request.app),
            "settings": s.public(),
            # What a load generator needs to predict ceilings, without importing this package.
            "constants": {
                "mixed_item_id": MIXED_ITEM_ID,
                "mixed_work": MIXED_WORK,
                "cpu_unit_ms": CPU_UNIT_MS,
                "traits": {
                    "io": registry.get(s.api_variant).io,
                    "cpu": registry.get(s.api_variant).cpu,
                },
            },
        }

    return router
