"""loadtest.e2e (what `make e2e` runs in the locust container), against the native servers."""

from __future__ import annotations

import pytest

from loadtest import e2e  # the entry point's path, as `make e2e` runs it
from loadtest.analysis.locust_stats import Summary
from loadtest.orchestrate import e2e as e2e_impl
from services.registry import NAMES


def test_e2e_passes_on_a_healthy_lab(
    lab_apis: dict[str, str], start_api, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    # 20 users on 5 tokens: sync is capped at 5 / 0.1 s = 50 req/s, async serves 200, blocking 10.
    sync = start_api("sync", THREADPOOL_TOKENS=5)
    targets = {**lab_apis, "sync": sync}
    monkeypatch.setenv("LAB_TARGETS", ",".join(f"{v}={u}" for v, u in targets.items()))
    assert e2e.main(["--users", "20", "--seconds", "2", "--delay-ms", "100"]) == 0
    assert "e2e: OK" in capsys.readouterr().out


def test_e2e_fails_when_the_order_is_wrong(
    lab_apis: dict[str, str], start_api, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    # Point "async" at the blocking server: async can no longer beat sync, and e2e must say so.
    targets = {**lab_apis, "async": lab_apis["blocking"]}
    monkeypatch.setenv("LAB_TARGETS", ",".join(f"{v}={u}" for v, u in targets.items()))
    assert e2e.main(["--users", "20", "--seconds", "2", "--delay-ms", "100"]) == 1
    assert "not ordered async > sync > blocking" in capsys.readouterr().out


def test_e2e_runs_every_registry_variant_and_names_failures(
    monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """Without servers: every variant of the registry is run, and one with failures fails."""
    rps = {"async": 100.0, "sync": 50.0, "blocking": 5.0}
    ran: list[str] = []

    def run_variant(url: str, *args: object) -> Summary:
        variant = url.removeprefix("http://api-").removesuffix(":8000")
        ran.append(variant)
        failures = 3 if variant == "threaded" else 0
        return Summary(100, failures, failures, rps.get(variant, 40.0), 1, 1, 1, 1, 1)

    monkeypatch.setenv("LAB_TARGETS", "http://api-{variant}:8000")
    monkeypatch.setattr(e2e_impl, "wait_ready", lambda url, seconds: None)
    monkeypatch.setattr(e2e_impl, "run_variant", run_variant)
    assert e2e.main([]) == 1
    assert ran == list(NAMES)
    assert "e2e: FAIL: threaded: 3 failures" in capsys.readouterr().out
