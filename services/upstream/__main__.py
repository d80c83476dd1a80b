"""`python -m services.upstream`: run the mock upstream (one process, uvloop + httptools)."""

import os
import sys

from services.envconfig import load_or_exit

from .settings import ENV_PREFIX, Settings


def main() -> int:
    # a bad value stops here: one line per problem naming the variable, exit code 2
    settings = load_or_exit(Settings, os.environ, prefix=ENV_PREFIX)

    import uvicorn  # imported late so a bad setting fails fast

    from .app import create_app

    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        ws="none",
        interface="asgi3",
        lifespan="on",
        access_log=False,
        log_level="warning",
        server_header=False,
        proxy_headers=False,
        # Longer than any client pool's idle expiry (httpx: 5 s): if the server closed idle
        # keep-alive connections first, clients would race it and see spurious resets.
        timeout_keep_alive=75,
        backlog=4096,  # bursts of thousands of new connections in the load labs
        # Stop within a few seconds even with delayed requests still sleeping.
        timeout_graceful_shutdown=3,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
