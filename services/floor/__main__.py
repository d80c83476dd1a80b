"""`python -m services.floor VARIANT --port N`: serve that variant's floor app under uvicorn
with the lab's server flags (services/api/server.py). DATABASE_URL and UPSTREAM_URL come from
the environment."""

import argparse
import importlib

import uvicorn

from services import registry
from services.floor import module_for

parser = argparse.ArgumentParser(prog="python -m services.floor", description=__doc__)
parser.add_argument("variant", choices=registry.NAMES)
parser.add_argument("--host", default="127.0.0.1")
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
args = parser.parse_args()

uvicorn.run(
    importlib.import_module(module_for(args.variant)).app,
    host=args.host,
    port=args.port,
    loop=args.loop,
    http="httptools",
    access_log=False,
    log_level="info",
    backlog=4096,
)
