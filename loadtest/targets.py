"""Which URL each variant answers on: configuration, not code.

`LAB_TARGETS="sync=http://api-sync:8000,async=http://api-async:8000,..."` (compose) overrides the
native lab's ports (services/lab/ports.py). Locust's Host field / --host still wins over both.
"""

from __future__ import annotations

import os

from services.lab.ports import API_PORTS, HOST, VARIANTS

__all__ = ["VARIANTS", "load_targets"]


def load_targets(spec: str | None = None) -> dict[str, str]:
    spec = os.environ.get("LAB_TARGETS", "") if spec is None else spec
    targets = {v: f"http://{HOST}:{API_PORTS[v]}" for v in VARIANTS}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        variant, sep, url = item.partition("=")
        if not sep or variant not in VARIANTS or not url.startswith(("http://", "https://")):
            raise ValueError(f"LAB_TARGETS: expected variant=http://host:port, got {item!r}")
        targets[variant] = url.rstrip("/")
    return targets
