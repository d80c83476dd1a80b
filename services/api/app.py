"""Build the app for the variant the settings name: contract + variant endpoints + ops routes."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI

from services import registry

from .contract import add_routes
from .errors import install_error_handlers
from .metrics import Live, MetricsMiddleware, lag_probe
from .ops import ops_router, pool_stats
from .process import ProcessSampler
from .settings import Settings


def create_app(settings: Settings) -> FastAPI:
    """The one place a variant is chosen: `settings.api_variant`, so the app, its pools and its
    database sessions (application_name lab-<variant>-<pid>) always name the same variant."""
    s = settings
    variant = importlib.import_module(registry.get(s.api_variant).module)
    # Only a process pool makes child processes worth sampling (finding them is the costly part).
    pool = registry.get(s.api_variant).cpu == "executor" and s.cpu_executor == "process"
    live = Live(process=ProcessSampler(children=pool))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Only possible inside the loop (at import time AnyIO raises NoEventLoopError), and
        # loop.set_default_executor() would not change it: FastAPI's threadpool is this limiter.
        anyio.to_thread.current_default_thread_limiter().total_tokens = s.threadpool_tokens
        async with variant.resources(s) as resources:
            for name, resource in resources.items():
                setattr(app.state, name, resource)
            async with lag_probe(live, s.loop_lag_interval, lambda: pool_stats(app)):
                yield

    doc = inspect.cleandoc(variant.__doc__ or "")
    app = FastAPI(
        title=f"FastAPI concurrency lab: {s.api_variant}", description=doc, lifespan=lifespan
    )
    install_error_handlers(app)
    app.add_middleware(MetricsMiddleware, live=live)
    add_routes(app.router, variant, s, app.state)
    app.include_router(ops_router(s, live, description=doc.splitlines()[0] if doc else ""))
    return app
