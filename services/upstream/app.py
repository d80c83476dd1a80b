"""The mock upstream as a hand-written ASGI callable.

Why no framework: the upstream must never be the bottleneck of the lab (thousands of requests
in flight, a few thousand per second, on one core). Routing is two string checks, every
static body is JSON encoded once at start-up, and a delayed request costs one task (made by
uvicorn) plus one `asyncio.sleep` timer.
"""

import asyncio
import gc
import json
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote_to_bytes

from .settings import LONGTAIL_CAP_FACTOR, MAX_DELAY_MS, Settings

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]
# (status, headers, body): a response ready to send, built once and reused.
Response = tuple[int, Headers, bytes]

N_TODOS = 200  # like JSONPlaceholder: /todos/1..200 and /posts/1..100 exist
N_POSTS = 100
WORDS = (
    "delectus aut autem quis ut nam facilis et officia qui fugiat veniam illo expedita "
    "laboriosam mollitia perspiciatis unde omnis iste natus error sit voluptatem accusantium "
    "doloremque laudantium totam rem aperiam eaque ipsa quae ab illo inventore veritatis"
).split()


def json_response(status: int, obj: object, extra: Headers | None = None) -> Response:
    body = json.dumps(obj, separators=(",", ":")).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    return status, headers + (extra or []), body


def _words(seed: int, count: int) -> str:
    # Arithmetic rather than random.Random so the texts never change between Python versions.
    return " ".join(WORDS[(seed * 31 + k * 17) % len(WORDS)] for k in range(count))


def _todo(i: int) -> dict[str, object]:
    return {
        "userId": (i - 1) // 20 + 1,
        "id": i,
        "title": _words(i, 3 + i % 4),
        "completed": i % 3 == 0,
    }


def _post(i: int) -> dict[str, object]:
    return {"userId": (i - 1) // 10 + 1, "id": i, "title": _words(i, 4), "body": _words(i + 7, 20)}


# Index 0 is unused so that TABLE[id] works for 1..N.
TODOS: list[Response | None] = [None] + [
    json_response(200, _todo(i)) for i in range(1, N_TODOS + 1)
]
POSTS: list[Response | None] = [None] + [
    json_response(200, _post(i)) for i in range(1, N_POSTS + 1)
]
RESOURCES: dict[str, tuple[str, list[Response | None]]] = {
    "/todos/": ("todo", TODOS),
    "/posts/": ("post", POSTS),
}
HEALTHZ = json_response(200, {"status": "ok"})
NOT_FOUND = json_response(404, {"detail": "Not Found"})
METHOD_NOT_ALLOWED = json_response(405, {"detail": "Method Not Allowed"}, [(b"allow", b"GET")])
ERROR_503 = json_response(503, {"detail": "mock upstream error", "status": 503})

# Garbage collection schedule (see UpstreamApp.lifespan).
GC_CHECK_S = 30.0
# Measured pauses (2 cores): ~0.1 ms idle, ~25 ms with 7,000 idle connections, ~75 ms with
# 6,000 requests in flight. "Nearly idle" keeps the number of requests such a pause delays
# small. To re-measure: set GC_CHECK_S = 1 and GC_IDLE_IN_FLIGHT = 10**9 (collect every
# second whatever the load), run `python -m services.upstream.bench`, read gc_last_ms on /stats.
GC_IDLE_IN_FLIGHT = 100
GC_MAX_INTERVAL_S = 600.0  # under sustained load, collect anyway (one pause every 10 min)


class QueryError(ValueError):
    """A query parameter has a bad value; the message names the parameter."""


@dataclass(slots=True)
class Options:
    """Per-request overrides from the query string (None = use the settings)."""

    delay_ms: int | None = None
    error: bool | None = None  # error=1 forces a 503, error=0 suppresses MOCK_ERROR_RATE
    hang: bool | None = None  # hang=1 forces a hang, hang=0 suppresses MOCK_HANG_RATE
    status: int | None = None  # status=N answers N (400..599) with a JSON error body


_BOOLS = {b"1": True, b"true": True, b"0": False, b"false": False}


def _int_param(name: str, value: bytes, low: int, high: int) -> int:
    # isdigit() rejects signs, blanks and decimals; the length check keeps int() cheap.
    if value.isdigit() and len(value) <= 7 and low <= (n := int(value)) <= high:
        return n
    raise QueryError(f"{name} must be an integer between {low} and {high}")


def _bool_param(name: str, value: bytes) -> bool:
    flag = _BOOLS.get(value.lower())
    if flag is None:
        raise QueryError(f"{name} must be 1 or 0")
    return flag


def parse_query(qs: bytes) -> Options:
    """Parse the few parameters we know; unknown ones are ignored, the last one wins."""
    opts = Options()
    if not qs:
        return opts
    for part in qs.split(b"&"):
        key, _, value = part.partition(b"=")
        if b"%" in value or b"+" in value:
            value = unquote_to_bytes(value.replace(b"+", b" "))
        if key == b"delay_ms":
            opts.delay_ms = _int_param("delay_ms", value, 0, MAX_DELAY_MS)
        elif key == b"status":
            opts.status = _int_param("status", value, 400, 599)
        elif key == b"error":
            opts.error = _bool_param("error", value)
        elif key == b"hang":
            opts.hang = _bool_param("hang", value)
    return opts


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:  # e.g. 599
        return "Error"


def _jitter_fn(settings: Settings) -> Callable[[], float]:
    """Return the function drawing the extra delay (ms) of one request."""
    scale = settings.jitter_ms
    if settings.jitter == "fixed" or scale == 0:
        return lambda: 0.0
    if settings.jitter == "uniform":
        return lambda: random.random() * scale
    # longtail: lognormal with sigma 1 and mean `scale` (mean = exp(mu + sigma^2 / 2)), capped.
    mu, cap = math.log(scale) - 0.5, scale * LONGTAIL_CAP_FACTOR
    return lambda: min(random.lognormvariate(mu, 1.0), cap)


def timer_seconds(delay_ms: float) -> float:
    """The asyncio.sleep() argument that ends `delay_ms` from now, never earlier.

    uvloop (libuv) timers have whole-millisecond resolution: one is due at floor(now in ms) +
    round(delay), so a plain sleep can end up to 1.5 ms early. Rounding the deadline up to the
    next millisecond boundary after now + delay costs ~0.5 ms on average instead.
    """
    now_fraction_ms = (time.monotonic_ns() % 1_000_000) / 1e6
    return math.ceil(delay_ms + now_fraction_ms) / 1000


async def _sleep_unless_disconnected(receive: Receive, seconds: float) -> bool:
    """Sleep, but stop early if the client goes away; True if the whole time elapsed.

    Used for hangs only: a client that timed out closes its connection, and without this the
    abandoned request would keep a task alive for MOCK_HANG_S (and delay server shutdown).
    """
    try:
        async with asyncio.timeout(seconds):
            while (await receive())["type"] != "http.disconnect":
                pass  # the (empty) request body; the next receive() waits for a disconnect
    except TimeoutError:
        return True
    return False


class UpstreamApp:
    """ASGI 3 application: `await app(scope, receive, send)`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.jitter = _jitter_fn(settings)
        config = settings.model_dump()
        config["max_delay_ms"] = MAX_DELAY_MS
        if settings.jitter == "longtail":
            config["longtail_cap_ms"] = settings.jitter_ms * LONGTAIL_CAP_FACTOR
        self.config_response = json_response(200, config)
        self.in_flight = 0  # delayed requests not answered yet
        self.served = 0
        self.gc_runs = 0
        self.gc_last_ms = 0.0
        self.gc_task: asyncio.Task[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self.lifespan(receive, send)

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        if scope["method"] != "GET":
            return await self.respond(send, METHOD_NOT_ALLOWED)
        resource = RESOURCES.get(path[:7])  # both prefixes are 7 characters long
        if resource is None:
            if path == "/healthz":
                return await self.respond(send, HEALTHZ)
            if path == "/config":
                return await self.respond(send, self.config_response)
            if path == "/stats":
                return await self.respond(send, json_response(200, self.stats()))
            return await self.respond(send, NOT_FOUND)
        try:
            opts = parse_query(scope["query_string"])
        except QueryError as exc:
            return await self.respond(send, json_response(422, {"detail": str(exc)}))

        s = self.settings
        hang = (
            opts.hang
            if opts.hang is not None
            else s.hang_rate > 0 and random.random() < s.hang_rate
        )
        if hang:
            delay_ms = s.hang_s * 1000
        else:
            delay_ms = (s.latency_ms if opts.delay_ms is None else opts.delay_ms) + self.jitter()

        # Choose the answer before sleeping; it is sent after the delay either way.
        name, table = resource
        raw_id = path[7:]
        # The path is decoded text: str.isdigit() accepts "²" (int() raises) and an Arabic-Indic
        # 1 (int() reads 1), so ASCII digits only; anything else names no item (404).
        idx = int(raw_id) if raw_id.isascii() and raw_id.isdigit() and len(raw_id) <= 6 else 0
        if opts.status is not None:
            response = json_response(
                opts.status, {"detail": _phrase(opts.status), "status": opts.status}
            )
        elif opts.error or (
            opts.error is None and s.error_rate > 0 and random.random() < s.error_rate
        ):
            response = ERROR_503
        elif 0 < idx < len(table) and (found := table[idx]) is not None:
            response = found
        else:
            response = json_response(404, {"detail": f"{name} {raw_id} not found"})

        self.in_flight += 1
        try:
            if hang:
                if not await _sleep_unless_disconnected(receive, s.hang_s):
                    return  # nobody is left to answer
            elif delay_ms > 0:
                await asyncio.sleep(timer_seconds(delay_ms))
            status, headers, body = response
            headers = [*headers, (b"x-mock-delay-ms", b"%.3f" % delay_ms)]
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            self.served += 1
        finally:
            self.in_flight -= 1

    def stats(self) -> dict[str, float]:
        return {
            "in_flight": self.in_flight,
            "served": self.served,
            "gc_collections": self.gc_runs,
            "gc_last_ms": round(self.gc_last_ms, 3),
        }

    @staticmethod
    async def respond(send: Send, response: Response) -> None:
        status, headers, body = response
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                # GC policy. A full (generation 2) collection walks every live object: with
                # thousands of requests in flight (a task, a coroutine, a scope, uvicorn's
                # per-request objects each) that stalls the loop for ~100 ms every few
                # seconds, 20x the 5 ms latency budget. Requests are freed by reference counting
                # (measured: ~100 cyclic objects left after 37,000 requests; gc.collect()
                # returns that count, e.g. from collect_garbage after a bench run), so the
                # automatic collector is off and full collections run when nearly idle.
                gc.freeze()  # start-up objects live forever: never scan them again
                gc.disable()
                self.gc_task = asyncio.create_task(self.collect_garbage())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.gc_task is not None:
                    self.gc_task.cancel()
                gc.enable()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def collect_garbage(self) -> None:
        """Run a full collection when few requests are in flight (or after GC_MAX_INTERVAL_S)."""
        last = time.monotonic()
        while True:
            await asyncio.sleep(GC_CHECK_S)
            now = time.monotonic()
            if self.in_flight < GC_IDLE_IN_FLIGHT or now - last >= GC_MAX_INTERVAL_S:
                gc.collect()
                last, self.gc_runs = time.monotonic(), self.gc_runs + 1
                self.gc_last_ms = (last - now) * 1000


def create_app(settings: Settings | None = None) -> UpstreamApp:
    """App factory (also usable as `uvicorn --factory services.upstream.app:create_app`)."""
    return UpstreamApp(settings or Settings())
