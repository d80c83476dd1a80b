"""The ASGI app the environment asks for: `uvicorn services.api.main:app`, and gunicorn's workers.

An entry point: the one place (with server.py and gunicorn.conf.py) that reads the environment.
"""

import os

from .app import create_app
from .settings import load_settings

app = create_app(load_settings(os.environ))
