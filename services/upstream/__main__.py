"""`python -m services.upstream`: run the mock upstream (one process, uvloop + httptools)."""

import sys

from pydantic import ValidationError

from .settings import Settings


def load_settings() -> Settings | None:
    """Read MOCK_* settings; on a bad value print one short line per problem, no traceback."""
    try:
        return Settings()
    except ValidationError as exc:
        for err in exc.errors():
            name = f"MOCK_{str(err['loc'][0]).upper()}" if err["loc"] else "MOCK_*"
            print(f"invalid setting {name}: {err['msg']} (got {err['input']!r})", file=sys.stderr)
        return None


def main() -> int:
    settings = load_settings()
    if settings is None:
        return 2

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
