"""Every knob of the API: environment -> this one object, built at start-up -> code.

The defaults below are the documented defaults (docs/settings.md is generated from this table).
Nothing is read at import: `Settings()` is the defaults, `load_settings(os.environ)` is what an
entry point (`python -m services.api`, main.py, gunicorn.conf.py) builds and passes on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from services import registry
from services.envconfig import load_or_exit


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    api_variant: str = Field(
        "async",
        description=f"which concurrency model this process serves: {', '.join(registry.NAMES)}",
    )
    api_host: str = Field("127.0.0.1", description="address to bind")
    api_port: int = Field(8000, ge=1, le=65535, description="port to bind")
    api_server: Literal["uvicorn", "gunicorn"] = Field("uvicorn", description="process server")
    api_workers: int = Field(1, ge=1, le=64, description="gunicorn worker processes")
    api_loop: Literal["uvloop", "asyncio"] = Field("uvloop", description="event loop")
    access_log: bool = Field(False, description="log every request (costs CPU under load)")
    api_limit_concurrency: int | None = Field(
        None,
        ge=1,
        description="admission control: above this many connections or requests in flight "
        "per process, answer 503 at once (uvicorn's limit_concurrency; unset: no limit)",
    )

    database_url: str = Field(
        "postgresql://postgres:postgres@127.0.0.1:5432/postgres", description="PostgreSQL DSN"
    )
    db_pool_min: int = Field(2, ge=0, description="connections opened at start-up, per process")
    db_pool_max: int = Field(20, ge=1, description="connection cap per process")
    db_acquire_timeout: float = Field(
        5.0, gt=0, description="seconds to wait for a free connection before answering 503"
    )
    db_connect_timeout: float = Field(3.0, gt=0, description="seconds to open one connection")
    db_statement_timeout: float = Field(
        15.0, gt=0, description="seconds one statement may run before answering 504"
    )

    upstream_url: str = Field("http://127.0.0.1:8080", description="base URL of the mock upstream")
    # One default everywhere (compose.yaml and .env repeat it; tests/test_compose.py checks): 15 s,
    # above the largest delay_ms a request may ask for (MAX_DELAY_MS, 10 s), which is not a 504.
    upstream_timeout: float = Field(
        15.0, gt=0, description="seconds for one upstream call before answering 504"
    )
    upstream_max_connections: int = Field(
        1000, ge=1, description="HTTP connections to the upstream, per process (httpx: 100)"
    )

    upstream_transport: Literal["aiohttp", "httpcore"] = Field(
        "aiohttp", description="async variants: transport under httpx.AsyncClient (see below)"
    )

    threadpool_tokens: int = Field(
        40,
        ge=1,
        description="AnyIO thread limiter: sync calls at once per process (def, run_in_threadpool)",
    )
    cpu_executor: Literal["process", "thread"] = Field(
        "process", description="offload variant: where CPU work runs"
    )
    cpu_workers: int = Field(2, ge=1, description="offload variant: executor size")

    default_delay_ms: int = Field(100, ge=0, description="delay_ms when a request gives none")
    max_delay_ms: int = Field(10_000, ge=0, description="largest delay_ms accepted (else 422)")
    default_work: int = Field(20, ge=1, description="CPU work units when a request gives none")
    max_work: int = Field(1_000, ge=1, description="largest work accepted (else 422)")

    loop_lag_interval: float = Field(
        0.05,
        gt=0,
        description="seconds between event-loop lag probes (the other gauges: every "
        "0.5 s and on each /metrics)",
    )
    prometheus_multiproc_dir: str | None = Field(
        None, description="set by gunicorn.conf.py for its workers (merged /metrics); not by hand"
    )

    @field_validator("api_variant")
    @classmethod
    def _known_variant(cls, name: str) -> str:
        if name not in registry.VARIANTS:
            raise ValueError(f"must be one of {', '.join(registry.NAMES)}")
        return name

    @model_validator(mode="after")
    def _check_ranges(self) -> Settings:
        if self.db_pool_min > self.db_pool_max:
            raise ValueError("DB_POOL_MIN must not exceed DB_POOL_MAX")
        if self.default_delay_ms > self.max_delay_ms:
            raise ValueError("DEFAULT_DELAY_MS must not exceed MAX_DELAY_MS")
        if self.default_work > self.max_work:
            raise ValueError("DEFAULT_WORK must not exceed MAX_WORK")
        return self

    def public(self) -> dict[str, object]:
        """Settings as shown by /runtime: the database password masked."""
        data = self.model_dump()
        data["database_url"] = _mask_password(self.database_url)
        return data


def _mask_password(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not at or ":" not in creds:
        return url
    user = creds.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}"


def load_settings(environ: Mapping[str, str]) -> Settings:
    """The settings an entry point runs with; on a bad value, stop with one line naming it."""
    return load_or_exit(Settings, environ)


def markdown_table() -> str:
    """The knobs table of docs/settings.md (a test keeps the two in step)."""
    rows = ["| variable | default | what it does |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.default
        text = str(default).lower() if isinstance(default, bool) else str(default)
        shown = "(unset)" if default is None else f"`{text}`"
        rows.append(f"| `{name.upper()}` | {shown} | {field.description} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
