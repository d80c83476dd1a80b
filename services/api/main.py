"""The ASGI app for API_VARIANT: `uvicorn services.api.main:app` or `python -m services.api`."""

from .app import create_app
from .settings import settings

app = create_app(settings.api_variant)
