"""The variants of the API, declared once: every Python consumer reads them from here.

Like uvicorn's `HTTP_PROTOCOLS` (name -> implementation module), each entry names the module that
holds the variant's endpoints, plus what the rest of the lab needs to know about it: its port in
the native lab and in compose, a one-line summary, its colour in charts, and where its requests
wait for I/O and run their CPU work (Little's law reads those two to compute ceilings).

Adding a variant: a module in services/api/variants/, an entry here, a service in compose.yaml
(a test checks compose and the Makefile against this table). Imports nothing, so a load
generator can read it without the API's dependencies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# Where a request's I/O wait happens:
#   loop         awaited on the event loop: thousands at once, no thread held
#   threadpool   in a thread holding one of AnyIO's tokens (THREADPOOL_TOKENS)
#   blocks-loop  on the loop thread itself: one request at a time per process
IoModel = Literal["loop", "threadpool", "blocks-loop"]
# Where CPU work runs: on the loop thread, in the threadpool (parallel only when the work releases
# the GIL), or in an executor (CPU_EXECUTOR / CPU_WORKERS).
CpuModel = Literal["loop", "threadpool", "executor"]


@dataclass(frozen=True)
class Variant:
    name: str
    module: str  # python module of its endpoints
    port: int  # published port, native lab and compose alike
    summary: str
    colour: str  # chart colour (matplotlib's tab10, so every chart agrees)
    io: IoModel
    cpu: CpuModel


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("sync", "services.api.variants.sync", 8001,
                "def endpoints, psycopg2, httpx.Client: FastAPI's threadpool",
                "#1f77b4", io="threadpool", cpu="threadpool"),
        Variant("async", "services.api.variants.async_", 8002,
                "async def endpoints, asyncpg, httpx.AsyncClient: the event loop",
                "#2ca02c", io="loop", cpu="loop"),
        Variant("offload", "services.api.variants.offload", 8003,
                "async I/O, CPU work sent to an executor",
                "#9467bd", io="loop", cpu="executor"),
        Variant("blocking", "services.api.variants.blocking", 8004,
                "ANTI-PATTERN: blocking calls inside async def",
                "#d62728", io="blocks-loop", cpu="loop"),
        Variant("threaded", "services.api.variants.threaded", 8005,
                "async def calling the sync drivers through run_in_threadpool",
                "#ff7f0e", io="threadpool", cpu="threadpool"),
    )
}  # fmt: skip

NAMES: tuple[str, ...] = tuple(VARIANTS)


def get(name: str) -> Variant:
    """The variant called `name`; a KeyError names the known ones."""
    try:
        return VARIANTS[name]
    except KeyError:
        raise KeyError(f"unknown variant {name!r}: choose from {', '.join(NAMES)}") from None


if __name__ == "__main__":
    # For the Makefile and shell scripts: `python -m services.registry` prints name and port.
    for v in VARIANTS.values():
        print(v.name, v.port)
