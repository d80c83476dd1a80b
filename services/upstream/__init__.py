"""Slow mock upstream of the lab: a lean ASGI app that answers after a configurable delay.

Run: `python -m services.upstream` (uvicorn, uvloop + httptools, one process).
Benchmark: `python -m services.upstream.bench --help`.

Settings (env, see settings.py): MOCK_HOST, MOCK_PORT, MOCK_LATENCY_MS, MOCK_JITTER_MS,
MOCK_JITTER (fixed | uniform | longtail), MOCK_ERROR_RATE, MOCK_HANG_RATE, MOCK_HANG_S.

Routes (GET only):
  /todos/{id} (1..200), /posts/{id} (1..100)  JSONPlaceholder-like bodies, after the delay;
      unknown ids answer 404 after the delay. Header x-mock-delay-ms = delay applied (ms).
      Query: delay_ms=0..600000 (else MOCK_LATENCY_MS; jitter is added to either),
      error=1|0 (force a 503 / ignore MOCK_ERROR_RATE), hang=1|0 (force a hang / ignore
      MOCK_HANG_RATE), status=400..599 (answer that status). Bad values: 422 naming the param.
  /healthz   {"status":"ok"} at once
  /config    effective settings
  /stats     {"in_flight", "served", "gc_collections", "gc_last_ms"}
A hang sleeps MOCK_HANG_S (then answers normally) unless the client disconnects first.
"""
