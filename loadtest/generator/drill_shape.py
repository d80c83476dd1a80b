"""The overload drill's load profile: -u users, then --overload-users for --overload-s seconds
from --overload-at-s, then -u users again until --total-s (arguments of drill_locust.py)."""

from __future__ import annotations

from locust import LoadTestShape, User


class OverloadShape(LoadTestShape):
    def tick(self) -> tuple[int, float, list[type[User]]] | None:
        env = self.runner.environment if self.runner else None
        options = env.parsed_options if env else None
        if env is None or options is None:
            return None
        # Only the drill's own classes: a shape without them spawns every class in the files.
        names = [n for n in options.overload_classes.split(",") if n]
        classes = [c for c in env.user_classes if not names or c.__name__ in names]
        t = self.get_run_time()  # type: ignore[no-untyped-call]
        if t >= options.total_s:
            return None
        base = int(options.num_users or 1)
        start, end = options.overload_at_s, options.overload_at_s + options.overload_s
        users = int(options.overload_users) if start <= t < end else base
        # Up and down at once: a slow ramp-down would stretch the overload past its end.
        return users, max(float(options.spawn_rate or 1), float(options.overload_users)), classes
