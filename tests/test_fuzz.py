"""Property-based fuzzing of every variant's OpenAPI document (Schemathesis, in-process ASGI).

Each variant's app is built in this process with small delays and work (so the slow routes stay
fast), on the session's real PostgreSQL and upstream. Schemathesis's engine (what
`schemathesis run URL/openapi.json --checks all` drives) runs its phases on every operation and
every check: no server error, only documented status codes, responses that match their schema,
schema-valid requests accepted, schema-invalid ones rejected, 405 answers that carry `Allow`.
Then raw bodies Schemathesis never sends (not UTF-8, nested too deep) get a documented answer.
"""

import json
import re
import time
from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from hypothesis import given, settings
from hypothesis import strategies as st
from schemathesis.config import CacheConfig, SchemathesisConfig
from schemathesis.core.failures import Failure
from schemathesis.core.transport import Response
from schemathesis.engine import Status, from_schema
from schemathesis.engine.events import (
    EngineFinished,
    FatalError,
    FuzzScenarioFinished,
    NonFatalError,
    ScenarioFinished,
)
from schemathesis.openapi.checks import RejectedPositiveData
from schemathesis.python.asgi import shutdown_lifespans

from services import registry
from services.api.app import create_app
from services.api.settings import Settings

# Small enough that every slow route answers in milliseconds, so the run stays within CI time.
FUZZ_SETTINGS = {"DEFAULT_DELAY_MS": 0, "MAX_DELAY_MS": 5, "DEFAULT_WORK": 1, "MAX_WORK": 2}
MAX_EXAMPLES = 50
UNKNOWN_ITEM = re.compile(r"item \d+ does not exist")
SEED = 20261201  # the same requests on every run: a CI failure reproduces locally
# Stateful testing needs links between operations; FastAPI's documents declare none.
PHASES = ["examples", "coverage", "fuzzing"]


def _config() -> SchemathesisConfig:
    # No cache of past failures to replay first: nothing written into the checkout.
    config = SchemathesisConfig(cache=CacheConfig(enabled=False))
    config.update(seed=SEED, max_failures=None)
    project = config.projects.override
    project.phases.update(phases=PHASES)
    # Every check (max_response_time runs only when given a limit: the routes are slow on purpose).
    project.checks.update(included_check_names=["all"])
    # No example database either: every run the same.
    project.generation.update(max_examples=MAX_EXAMPLES, database="none")
    # Every failure of every operation, not only the first: the report lists all the gaps.
    project.update(continue_on_failure=True)
    return config


def _unknown_item(context: object, failure: Failure, case: object, response: Response) -> bool:
    """Keep every failure but one: a schema-valid order naming an item the database does not hold
    is rejected with the documented 422 ("item N does not exist"). Data, not a schema gap, and
    no schema can say which ids exist. Any other 422 to a valid request still fails."""
    if not isinstance(failure, RejectedPositiveData) or response.status_code != 422:
        return True
    errors = response.json().get("detail", [])
    return not errors or not all(UNKNOWN_ITEM.fullmatch(e.get("msg", "")) for e in errors)


def fuzz(variant: str, database_url: str, upstream_url: str) -> tuple[list[str], dict[str, int]]:
    """Run the engine against the variant's app: one line per failed check or engine error, and
    how many checks ran per operation (a run that tested nothing must not pass)."""
    app = create_app(
        Settings.model_validate(
            {
                "api_variant": variant,
                "database_url": database_url,
                "upstream_url": upstream_url,
                **{name.lower(): value for name, value in FUZZ_SETTINGS.items()},
            }
        )
    )
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=_config())
    schema.hook("filter_failure")(_unknown_item)
    problems: list[str] = []
    checked: dict[str, int] = {}
    try:
        for event in from_schema(schema).execute():
            if isinstance(event, ScenarioFinished | FuzzScenarioFinished):
                for case_id, checks in event.recorder.checks.items():
                    case = event.recorder.cases[case_id].value
                    label = case.operation.label
                    checked[label] = checked.get(label, 0) + len(checks)
                    for check in checks:
                        if check.status == Status.FAILURE and check.failure_info is not None:
                            failure = check.failure_info.failure
                            message = (failure.message or "").strip().splitlines()[:1]
                            problems.append(
                                f"{case.operation.label} [{check.name}] {failure.title}: "
                                f"{''.join(message)}  <- {case.method} {case.formatted_path}"
                                f" body={case.body!r}"[:400]
                            )
            elif isinstance(event, NonFatalError | FatalError):
                problems.append(f"engine error: {getattr(event, 'value', None) or event}")
            elif isinstance(event, EngineFinished):
                break
    finally:
        # Schemathesis keeps an app's lifespan (its pools, its worker processes) running until
        # the interpreter exits: close this variant's now.
        shutdown_lifespans()
    return sorted(set(problems)), checked


@pytest.mark.parametrize("variant", registry.NAMES)
def test_fuzz_openapi(variant: str, database_url: str, upstream_url: str) -> None:
    started = time.monotonic()
    problems, checked = fuzz(variant, database_url, upstream_url)
    print(f"{variant}: {sum(checked.values())} checks in {time.monotonic() - started:.1f} s")
    assert not problems, "\n".join(problems)
    # Every operation of the document was exercised, many times each.
    assert set(checked) == operations(variant), checked
    assert min(checked.values()) >= MAX_EXAMPLES, checked


def operations(variant: str) -> set[str]:
    document = create_app(Settings(api_variant=variant)).openapi()
    return {f"{method.upper()} {path}" for path, ops in document["paths"].items() for method in ops}


# Bodies Schemathesis never sends (it serialises what it generates as JSON): raw bytes, often not
# UTF-8, and JSON nested deeper than the parser's recursion limit, all labelled application/json.
RAW_BODIES = st.one_of(
    st.binary(max_size=64),
    st.integers(min_value=1, max_value=5_000).map(lambda depth: b"[" * depth + b"]" * depth),
    st.text(max_size=16).map(lambda text: json.dumps(text, ensure_ascii=False).encode("utf-16")),
)


@pytest.mark.parametrize("variant", registry.NAMES)
def test_any_body_gets_a_documented_answer(variant: str, app_client: Callable[..., Any]) -> None:
    client = app_client(variant, **FUZZ_SETTINGS)
    operation = client.get("/openapi.json").json()["paths"]["/orders"]["post"]
    documented = {int(code) for code in operation["responses"]}

    @given(body=RAW_BODIES)
    @settings(max_examples=60, deadline=None, derandomize=True, database=None)
    def post(body: bytes) -> None:
        response = client.post(
            "/orders", content=body, headers={"content-type": "application/json"}
        )
        assert response.status_code in documented, (body[:40], response.status_code, response.text)

    post()
