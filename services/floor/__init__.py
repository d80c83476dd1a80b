"""Floor apps: what the stack itself costs, for `make bench-floor` to measure the lab against.

One small module per concurrency model, each the minimal idiomatic FastAPI app a reader would
write for `/items/{item_id}`, `/io/upstream` and `/io/db`: the same framework, drivers, client,
transport, response models and server flags as the lab's variants, and none of the lab's extras
(metrics middleware, loop-lag probe, error mapping, dependencies, settings). `offload` differs
from `async` only in where CPU work runs, which these routes do not do: its floor is async's.
"""

from services import registry

FLOORS: dict[str, str] = {
    "sync": "services.floor.sync",
    "async": "services.floor.async_",
    "offload": "services.floor.async_",
    "blocking": "services.floor.blocking",
    "threaded": "services.floor.threaded",
}

# The lab's defaults (services/api/settings.py), written out here so that the floor apps read
# no settings object; tests/test_bench_floor.py keeps the two in step.
DB_POOL_MAX = 20
UPSTREAM_MAX_CONNECTIONS = 1000
UPSTREAM_TIMEOUT_S = 15.0


def module_for(variant: str) -> str:
    """The floor module of a registry variant."""
    registry.get(variant)  # a KeyError naming the known variants
    return FLOORS[variant]
