"""Fixed ports of the lab, shared by the native runner, compose and the Locust files.

The APIs' ports are in the variant registry (services/registry.py); these are the others.
"""

from services.registry import NAMES as VARIANTS
from services.registry import VARIANTS as _REGISTRY

# VARIANTS (the registry's names, in order) is re-exported for loadtest/ and the tests.
__all__ = ["API_PORTS", "HOST", "LOCUST_PORT", "UPSTREAM_PORT", "VARIANTS"]

API_PORTS: dict[str, int] = {name: v.port for name, v in _REGISTRY.items()}
UPSTREAM_PORT: int = 8080
LOCUST_PORT: int = 8089
# Every server binds loopback only: the lab is never meant to be reachable from the network.
HOST: str = "127.0.0.1"
