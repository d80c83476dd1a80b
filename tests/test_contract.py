"""Every variant serves the same contract: same OpenAPI, same answers to the same requests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import httpx
import pytest

from services.api.app import create_app
from services.api.settings import Settings
from services.registry import NAMES as VARIANTS
from tests.helpers import AppClient

VOLATILE = {"elapsed_ms", "pid", "created_at", "id"}


def _openapi(variant: str) -> dict[str, Any]:
    spec = create_app(Settings(api_variant=variant)).openapi()
    spec.pop("info")  # title and description name the variant on purpose
    return spec


@pytest.mark.parametrize("variant", [v for v in VARIANTS if v != "sync"])
def test_openapi_is_identical_to_sync(variant: str) -> None:
    assert json.dumps(_openapi(variant), sort_keys=True) == json.dumps(
        _openapi("sync"), sort_keys=True
    )


def test_openapi_has_every_route() -> None:
    paths = _openapi("sync")["paths"]
    assert set(paths) == {
        "/items/{item_id}", "/io/db", "/io/upstream", "/cpu", "/mixed", "/orders",
        "/healthz", "/readyz", "/metrics", "/runtime",
    }  # fmt: skip
    assert "201" in paths["/orders"]["post"]["responses"]


def _stable(body: Any) -> Any:
    """The answer without what legitimately differs per call (timings, pids, new ids)."""
    if isinstance(body, dict):
        return {k: _stable(v) for k, v in body.items() if k not in VOLATILE}
    return body


REQUESTS = [
    ("GET", "/items/7", None),
    ("GET", "/items/999999", None),
    ("GET", "/io/db?delay_ms=20", None),
    ("GET", "/io/upstream?delay_ms=20", None),
    ("GET", "/cpu?work=3&kind=python", None),
    ("GET", "/cpu?work=3&kind=native", None),
    ("GET", "/mixed", None),
    ("POST", "/orders", {"item_id": 5, "quantity": 2, "note": "contract"}),
    ("POST", "/orders", {"item_id": 500_000, "quantity": 1}),
    ("GET", "/io/db?delay_ms=-1", None),
    ("GET", "/healthz", None),
    ("GET", "/readyz", None),
]


def test_every_variant_gives_the_same_answers(app_client: AppClient) -> None:
    answers = {
        variant: [
            (r.status_code, _stable(r.json()))
            for r in (client.request(m, path, json=body) for m, path, body in REQUESTS)
        ]
        for variant, client in ((v, app_client(v)) for v in VARIANTS)
    }
    statuses = [status for status, _ in answers["sync"]]
    assert statuses == [200, 404, 200, 200, 200, 200, 200, 201, 422, 422, 200, 200]
    for variant, got in answers.items():
        assert got == answers["sync"], variant


@pytest.mark.parametrize("variant", VARIANTS)
def test_one_variant_identity_per_app(
    app_client: AppClient, database_url: str, variant: str
) -> None:
    """The app, /runtime and the database sessions all name the variant of the settings: there
    is no second place to name it (create_app takes only the settings)."""
    import psycopg2

    client = app_client(variant)
    assert client.get("/runtime").json()["variant"] == variant
    assert client.get("/items/1").status_code == 200
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT DISTINCT application_name FROM pg_stat_activity WHERE application_name LIKE %s",
            (f"lab-%-{os.getpid()}",),
        )
        assert [name for (name,) in cur.fetchall()] == [f"lab-{variant}-{os.getpid()}"]
    conn.close()


def test_settings_are_not_read_at_import() -> None:
    """Importing the app reads no environment: only the entry points build settings from it."""
    code = "import services.api.app, services.api.settings as s; print(s.Settings().api_variant)"
    env = {**os.environ, "API_VARIANT": "sync", "THREADPOOL_TOKENS": "not a number"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "async"  # the default, not the environment's "sync"


def test_cpu_workers_import_no_web_stack() -> None:
    """What a process-pool worker imports to run `burn`: the standard library, not FastAPI."""
    code = (
        "import sys, services.api.burn; print(sorted({'fastapi', 'pydantic'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_orders_are_durable(lab_apis: dict[str, str], database_url: str) -> None:
    """A 201 means committed: the row is there for a different connection to read."""
    import psycopg2

    for variant, url in lab_apis.items():
        r = httpx.post(f"{url}/orders", json={"item_id": 9, "quantity": 3, "note": variant})
        assert r.status_code == 201
        with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT item_id, quantity, note FROM orders WHERE id = %s", (r.json()["id"],)
            )
            assert cur.fetchone() == (9, 3, variant)
        conn.close()


def test_runtime_names_variant_and_settings(lab_apis: dict[str, str]) -> None:
    for variant, url in lab_apis.items():
        body = httpx.get(f"{url}/runtime").json()
        assert body["variant"] == variant
        assert body["server"] == "uvicorn" and body["loop"] == "uvloop"
        assert body["threadpool"]["total"] == body["settings"]["threadpool_tokens"] == 40
        assert (
            "***" in body["settings"]["database_url"] or "@" not in body["settings"]["database_url"]
        )
    assert "ANTI-PATTERN" in httpx.get(f"{lab_apis['blocking']}/runtime").json()["description"]
    assert httpx.get(f"{lab_apis['offload']}/runtime").json()["executor"]["kind"] == "process"
    assert "run_in_threadpool" in httpx.get(f"{lab_apis['threaded']}/runtime").json()["description"]
