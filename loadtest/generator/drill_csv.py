"""PREFIX_requests.csv's path and columns, shared by the drill's recorder (inside Locust) and
its reader (loadtest/analysis/drill_rules.py); imports no Locust, so orchestrators may use it."""

from __future__ import annotations

from pathlib import Path

REQUEST_COLUMNS = ("start", "end", "name", "status", "response_ms", "order_id", "note", "error")


def requests_path(prefix: Path | str) -> Path:
    return Path(f"{prefix}_requests.csv")


def started_path(prefix: Path | str) -> Path:
    """Written when the load starts: the drill times its fault from it, not from a guess at
    how long Locust takes to import and spawn."""
    return Path(f"{prefix}_started")


# The drill users' connect timeout (drill_locust.NotedUser); their read timeout is Locust's 60 s.
CONNECT_TIMEOUT_S = 3.0
