"""loadtest.e2e (what `make e2e` runs in the locust container), against the native servers."""

from __future__ import annotations

import pytest

from loadtest import e2e


def test_e2e_passes_on_a_healthy_lab(
    lab_apis: dict[str, str], start_api, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    # 20 users on 5 tokens: sync is capped at 5 / 0.1 s = 50 req/s, async serves 200, blocking 10.
    sync = start_api("sync", THREADPOOL_TOKENS=5)
    targets = {**lab_apis, "sync": sync}
    monkeypatch.setenv("LAB_TARGETS", ",".join(f"{v}={u}" for v, u in targets.items()))
    assert e2e.main(["--users", "20", "--seconds", "4", "--delay-ms", "100"]) == 0
    assert "e2e: OK" in capsys.readouterr().out


def test_e2e_fails_when_the_order_is_wrong(
    lab_apis: dict[str, str], start_api, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    # Point "async" at the blocking server: async can no longer beat sync, and e2e must say so.
    targets = {**lab_apis, "async": lab_apis["blocking"]}
    monkeypatch.setenv("LAB_TARGETS", ",".join(f"{v}={u}" for v, u in targets.items()))
    assert e2e.main(["--users", "20", "--seconds", "3", "--delay-ms", "100"]) == 1
    assert "not ordered async > sync > blocking" in capsys.readouterr().out
