"""Little's-law ceilings (loadtest/analysis/littles_law.py): pure arithmetic, no servers."""

from typing import Any

import pytest

from loadtest.analysis.littles_law import Limits, ceiling, demand
from loadtest.generator.scenarios import SCENARIOS
from services.api.burn import CPU_UNIT_MS
from services.api.settings import Settings
from services.api.shared import MIXED_ITEM_ID, MIXED_WORK
from services.registry import VARIANTS

# What the API's /runtime says about itself, built from the API's own code: the load generator
# keeps no copy of these defaults.
CONSTANTS = {"mixed_work": MIXED_WORK, "mixed_item_id": MIXED_ITEM_ID, "cpu_unit_ms": CPU_UNIT_MS}


def runtime(**settings: Any) -> dict[str, Any]:
    return {"settings": {**Settings().public(), **settings}, "constants": CONSTANTS}


def limits(**settings: Any) -> Limits:
    """The API's defaults (40 tokens, DB pool 20, 2 process workers), `settings` changed."""
    return Limits.from_runtime(runtime(**settings))


DEFAULTS = limits()
# Variants whose I/O holds a threadpool token: sync, and threaded (async def + run_in_threadpool)
THREADPOOL_IO = [name for name, v in VARIANTS.items() if v.io == "threadpool"]


def ceil(
    scenario: str,
    variant: str,
    users: int = 200,
    *,
    limits: Limits = DEFAULTS,
    delay_ms: int = 200,
    work: int = 20,
    cores: int = 2,
) -> tuple[float | None, str]:
    c = ceiling(scenario, variant, users, delay_ms=delay_ms, work=work, limits=limits, cores=cores)
    return c.rps, c.why


@pytest.mark.parametrize(
    ("variant", "rps", "why"),
    [
        ("sync", 200, "40 tokens / 0.200 s"),  # the README's finding: 40 / 0.2 s
        ("async", 1000, "200 users / 0.200 s (until the CPU saturates)"),
        ("offload", 1000, "200 users / 0.200 s (until the CPU saturates)"),
        ("blocking", 5, "1 loop / 0.200 s"),
    ],
)
def test_upstream_200ms_200_users(variant: str, rps: float, why: str) -> None:
    assert ceil("upstream", variant) == (pytest.approx(rps), why)


def test_fewer_users_than_tokens_bind_sync() -> None:
    assert ceil("upstream", "sync", users=10) == (pytest.approx(50), "10 users / 0.200 s")


def test_db_pool_limits_every_variant_that_waits_on_the_database() -> None:
    # 40 tokens but only 20 connections: the pool binds sync, and async too.
    assert ceil("db", "sync") == (pytest.approx(100), "20 DB conns / 0.200 s")
    assert ceil("db", "async")[0] == pytest.approx(100)
    assert ceil("db", "blocking")[0] == pytest.approx(5)
    # with a big pool the tokens bind again
    big_pool = limits(db_pool_max=100)
    assert ceil("db", "sync", limits=big_pool) == (pytest.approx(200), "40 tokens / 0.200 s")
    # the upstream scenario holds no DB connection: the pool does not matter there
    assert ceil("upstream", "sync", limits=limits(db_pool_max=1))[0] == pytest.approx(200)


def test_gunicorn_workers_multiply_the_per_process_limits() -> None:
    four = limits(api_workers=4, api_server="gunicorn")
    assert ceil("upstream", "sync", limits=four) == (
        pytest.approx(800),
        "4 workers x 40 tokens / 0.200 s",
    )
    assert ceil("upstream", "blocking", limits=four)[0] == pytest.approx(20)
    assert ceil("db", "sync", limits=four)[0] == pytest.approx(400)  # 4 x 20 connections
    # ... but never beyond the users
    assert ceil("upstream", "sync", users=100, limits=four)[0] == pytest.approx(500)


@pytest.mark.parametrize(
    ("scenario", "variant", "limits", "rps", "why"),
    [
        ("cpu-python", "sync", DEFAULTS, 50, "1 GIL / 0.020 s"),
        ("cpu-python", "async", DEFAULTS, 50, "1 loop / 0.020 s"),
        ("cpu-python", "blocking", DEFAULTS, 50, "1 loop / 0.020 s"),
        ("cpu-python", "offload", DEFAULTS, 100, "2 process workers / 0.020 s"),
        ("cpu-python", "offload", limits(cpu_executor="thread"), 50, "1 GIL (thread executor)"),
        ("cpu-native", "offload", limits(cpu_executor="thread"), 100, "2 thread workers"),
        ("cpu-native", "sync", DEFAULTS, 100, "2 cores / 0.020 s"),  # threads escape the GIL
        ("cpu-native", "async", DEFAULTS, 50, "1 loop / 0.020 s"),
        ("cpu-python", "offload", limits(cpu_workers=8), 100, "2 cores / 0.020 s"),
        (
            "cpu-python",
            "async",
            limits(api_workers=4, api_server="gunicorn"),
            100,
            "2 cores / 0.020 s",
        ),
        (
            "cpu-python",
            "sync",
            limits(api_workers=2, api_server="gunicorn"),
            100,
            "2 workers x 1 GIL / 0.020 s",
        ),
    ],
)
def test_cpu_ceilings(scenario: str, variant: str, limits: Limits, rps: float, why: str) -> None:
    got_rps, got_why = ceil(scenario, variant, limits=limits)
    assert got_rps == pytest.approx(rps)
    assert got_why.startswith(why)


def test_cpu_is_bounded_by_users_too() -> None:
    assert ceil("cpu-python", "offload", users=1) == (pytest.approx(50), "1 user / 0.020 s")


def test_mixed_is_bounded_by_its_cpu_part_on_the_loop() -> None:
    # S = 1 ms DB + 100 ms upstream (DEFAULT_DELAY_MS) + 2 ms CPU = 0.103 s
    rps, why = ceil("mixed", "async")
    assert (rps, why) == (pytest.approx(500), "1 loop / 0.002 s CPU")
    rps, why = ceil("mixed", "sync")
    assert (rps, why) == (pytest.approx(40 / 0.103), "40 tokens / 0.103 s")
    assert ceil("mixed", "offload")[0] == pytest.approx(1000)  # 2 workers / 2 ms
    assert ceil("mixed", "blocking")[0] == pytest.approx(1 / 0.103)


def test_items_and_write_have_no_fixed_wait() -> None:
    for scenario in ("items", "write"):
        rps, why = ceil(scenario, "sync")
        assert rps is None
        assert why.startswith("n/a")


def test_expected_latency_is_users_over_the_ceiling() -> None:
    c = ceiling("upstream", "sync", 200, delay_ms=200, work=20, limits=DEFAULTS, cores=2)
    assert c.latency_s(200) == pytest.approx(1.0)  # 200 users / 200 req/s
    c = ceiling("items", "sync", 200, delay_ms=200, work=20, limits=DEFAULTS, cores=2)
    assert c.latency_s(200) is None


def test_measured_cpu_unit_changes_the_service_time() -> None:
    d = demand("cpu-python", 0, 20, DEFAULTS, cpu_unit_s=0.002)
    assert d is not None and d.service_s == pytest.approx(0.040)
    nominal = demand("cpu-python", 0, 20, DEFAULTS)  # the API's own cpu_unit_ms
    assert nominal is not None and nominal.service_s == pytest.approx(0.020)


def test_limits_come_from_runtime_settings() -> None:
    got = limits(threadpool_tokens=10, api_workers=3, api_server="gunicorn", database_url="x")
    assert (got.threadpool_tokens, got.api_workers, got.db_pool_max) == (10, 3, 20)


def test_mixed_work_comes_from_the_runtime_constants() -> None:
    assert DEFAULTS.mixed_work == MIXED_WORK
    doubled = Limits.from_runtime({**runtime(), "constants": {**CONSTANTS, "mixed_work": 4}})
    assert ceiling("mixed", "async", 200, delay_ms=0, work=0, limits=doubled, cores=2).why == (
        "1 loop / 0.004 s CPU"
    )


def test_a_runtime_without_settings_or_constants_is_refused() -> None:
    with pytest.raises(ValueError, match="mixed_work"):
        Limits.from_runtime({"settings": Settings().public()})
    with pytest.raises(ValueError, match="threadpool_tokens"):
        Limits.from_runtime({"settings": {}, "constants": CONSTANTS})


def test_api_workers_count_only_under_gunicorn() -> None:
    assert limits(api_workers=4, api_server="uvicorn").api_workers == 1
    assert limits(api_workers=4, api_server="gunicorn").api_workers == 4


# --- derived from the registry's traits and the scenario table, not from names -----------------


def test_threaded_is_in_the_registry_with_the_threadpool_traits() -> None:
    assert "threaded" in THREADPOOL_IO and "sync" in THREADPOOL_IO


@pytest.mark.parametrize("variant", THREADPOOL_IO)
@pytest.mark.parametrize(
    ("scenario", "users", "limits_", "rps", "why"),
    [
        ("upstream", 200, DEFAULTS, 200, "40 tokens / 0.200 s"),
        ("upstream", 10, DEFAULTS, 50, "10 users / 0.200 s"),
        ("db", 200, DEFAULTS, 100, "20 DB conns / 0.200 s"),
        ("db", 200, limits(db_pool_max=100), 200, "40 tokens / 0.200 s"),
        ("cpu-python", 200, DEFAULTS, 50, "1 GIL / 0.020 s"),
        ("cpu-native", 200, DEFAULTS, 100, "2 cores / 0.020 s"),
        ("mixed", 200, DEFAULTS, 40 / 0.103, "40 tokens / 0.103 s"),
    ],
)
def test_threadpool_variants_share_the_tokens_ceilings(
    variant: str, scenario: str, users: int, limits_: Limits, rps: float, why: str
) -> None:
    """threaded calls the sync drivers in the threadpool: the same ceilings as sync."""
    assert ceil(scenario, variant, users, limits=limits_) == (pytest.approx(rps), why)


def test_threadpool_tokens_multiply_with_gunicorn_workers_for_threaded() -> None:
    four = limits(api_workers=4, api_server="gunicorn")
    assert ceil("upstream", "threaded", limits=four) == (
        pytest.approx(800),
        "4 workers x 40 tokens / 0.200 s",
    )


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_every_scenario_has_a_demand_or_says_why_not(name: str) -> None:
    got = ceil(name, "async")
    assert (got[0] is None) == (SCENARIOS[name].demand == "none")
    assert got[0] is not None or got[1].startswith("n/a")
