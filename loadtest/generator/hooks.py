"""Register Locust event listeners with types (Locust's EventHook.add_listener has none)."""

from __future__ import annotations

from collections.abc import Callable

from locust.event import EventHook


def listen(hook: EventHook, handler: Callable[..., None]) -> None:
    """`hook.add_listener(handler)`, by call: as a decorator it would erase the handler's types."""
    add: Callable[[Callable[..., None]], object] = hook.add_listener
    add(handler)
