"""CPU work of a given size: what /cpu and /mixed spend, inline or in an executor's worker.

Imports only the standard library: a process-pool worker unpickles `burn` by importing this
module, and should not pay for (or be able to block on) the web stack.
One work unit is about 1 ms of one core (measure it on your machine: `GET /cpu?work=100`
answers `elapsed_ms`).
"""

from __future__ import annotations

import hashlib
import os
import time
from typing import Literal, TypedDict

PYTHON_ITERATIONS_PER_UNIT = 12_000
PBKDF2_ROUNDS_PER_UNIT = 4_000
CPU_UNIT_MS = 1.0  # what a unit aims at; compare and capacity measure the real one per target

CpuKind = Literal["python", "native"]


class Burned(TypedDict):
    """Fields of schemas.CpuResult, as plain data (picklable, no pydantic in the worker)."""

    kind: CpuKind
    work: int
    elapsed_ms: float
    pid: int
    digest: str


def burn(work: int, kind: CpuKind) -> Burned:
    """Module-level (picklable), so a process pool can run it too."""
    start = time.perf_counter()
    if kind == "python":
        # Pure-Python bytecode: holds the GIL the whole time, so threads cannot run it in parallel.
        acc = 0
        for i in range(work * PYTHON_ITERATIONS_PER_UNIT):
            acc = (acc * 31 + i) & 0xFFFFFFFF
        digest = f"{acc:08x}"
    else:
        # hashlib releases the GIL inside pbkdf2, so threads do run this in parallel.
        digest = hashlib.pbkdf2_hmac(
            "sha256", b"lab", b"salt", work * PBKDF2_ROUNDS_PER_UNIT
        ).hex()[:16]
    elapsed_ms = (time.perf_counter() - start) * 1000
    return Burned(kind=kind, work=work, elapsed_ms=elapsed_ms, pid=os.getpid(), digest=digest)
