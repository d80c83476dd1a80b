"""Describe where the numbers were measured: the machine and versions (results.json, report.md)."""

from __future__ import annotations

import platform
import sys
from importlib import metadata
from typing import TypedDict

import psutil

from services.lab.sysinfo import cpu_model

PACKAGES = (
    "locust",
    "fastapi",
    "starlette",
    "uvicorn",
    "gunicorn",
    "uvloop",
    "httpx",
    "aiohttp",
    "asyncpg",
    "psycopg2-binary",
    "anyio",
    "matplotlib",
)


class Machine(TypedDict):
    cores: int
    physical_cores: int | None
    cpu_model: str
    memory_gib: float
    os: str
    load_avg_1m_at_start: float


def machine() -> Machine:
    return {
        "cores": psutil.cpu_count() or 1,
        "physical_cores": psutil.cpu_count(logical=False),
        "cpu_model": cpu_model(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "load_avg_1m_at_start": round(psutil.getloadavg()[0], 2),
    }


def versions() -> dict[str, str]:
    found = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def one_line(m: Machine, v: dict[str, str]) -> tuple[str, str]:
    """Machine and versions as two short lines for the top of a report."""
    mline = f"{m['cores']} cores ({m['cpu_model']}), {m['memory_gib']} GiB, {m['os']}"
    keys = ("python", "locust", "fastapi", "uvicorn", "gunicorn", "httpx")
    vline = ", ".join(f"{k} {v[k]}" for k in keys if k in v)
    return mline, vline
