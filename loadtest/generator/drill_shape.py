"""The overload drill's load profile: -u users, then --overload-users for --overload-s seconds
from --overload-at-s, then -u users again until --total-s (arguments of drill_locust.py)."""

from __future__ import annotations

from locust import LoadTestShape


class OverloadShape(LoadTestShape):
    def tick(self) -> tuple[int, float] | None:
        options = self.runner.environment.parsed_options if self.runner else None
        if options is None:
            return None
        t = self.get_run_time()  # type: ignore[no-untyped-call]
        if t >= options.total_s:
            return None
        base = int(options.num_users or 1)
        start, end = options.overload_at_s, options.overload_at_s + options.overload_s
        users = int(options.overload_users) if start <= t < end else base
        # Up and down at once: a slow ramp-down would stretch the overload past its end.
        return users, max(float(options.spawn_rate or 1), float(options.overload_users))
