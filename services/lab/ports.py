"""Fixed ports of the lab, shared by the native runner, compose and the Locust files.

Kept free of imports so that any tool can read these constants cheaply.
"""

VARIANTS: tuple[str, ...] = ("sync", "async", "offload", "blocking")
API_PORTS: dict[str, int] = {"sync": 8001, "async": 8002, "offload": 8003, "blocking": 8004}
UPSTREAM_PORT: int = 8080
LOCUST_PORT: int = 8089
# Every server binds loopback only: the lab is never meant to be reachable from the network.
HOST: str = "127.0.0.1"
