"""Settings of the mock upstream: one frozen object, built from MOCK_* variables at start-up."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# Largest delay a request may ask for (delay_ms query param); also bounds the settings.
MAX_DELAY_MS = 600_000
# The longtail jitter is capped at this many times MOCK_JITTER_MS, so one unlucky draw can
# not turn a 100 ms upstream into a minutes-long one (the cap is hit ~2 times in 10,000).
LONGTAIL_CAP_FACTOR = 20


ENV_PREFIX = "MOCK_"


class Settings(BaseModel):
    """Effective configuration; frozen so the app can pre-encode what depends on it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = Field("127.0.0.1", description="address to bind (loopback only in the lab)")
    port: int = Field(8080, ge=1, le=65535, description="TCP port to listen on")
    latency_ms: float = Field(
        100, ge=0, le=MAX_DELAY_MS, description="delay when the request gives no delay_ms"
    )
    jitter_ms: float = Field(0, ge=0, le=MAX_DELAY_MS, description="scale of the added jitter")
    jitter: Literal["fixed", "uniform", "longtail"] = Field(
        "fixed",
        description=(
            "fixed: no jitter; uniform: + U(0, jitter_ms); longtail: + lognormal(sigma=1) with "
            f"mean jitter_ms, capped at {LONGTAIL_CAP_FACTOR} x jitter_ms"
        ),
    )
    error_rate: float = Field(0.0, ge=0, le=1, description="fraction answered 503 (after delay)")
    hang_rate: float = Field(0.0, ge=0, le=1, description="fraction that sleep hang_s instead")
    hang_s: float = Field(3600.0, gt=0, description="how long a 'hanging' request sleeps")
