"""`make bench-floor`: the floor apps match the lab's stack, and a real (short) run writes a
report whose numbers add up and whose exit code follows --max-ratio."""

from __future__ import annotations

import importlib
import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.routing import APIRoute

from loadtest.analysis.floor_report import pair, run_numbers
from services import floor, registry
from services.api.contract import ROUTES
from services.api.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
FLOOR_PATHS = ("/items/{item_id}", "/io/upstream", "/io/db")


def test_floor_constants_are_the_lab_defaults() -> None:
    defaults = Settings()
    assert floor.DB_POOL_MAX == defaults.db_pool_max
    assert floor.UPSTREAM_MAX_CONNECTIONS == defaults.upstream_max_connections
    assert floor.UPSTREAM_TIMEOUT_S == defaults.upstream_timeout


@pytest.mark.parametrize("variant", registry.NAMES)
def test_every_variant_has_a_floor_with_the_same_response_models(variant: str) -> None:
    app = importlib.import_module(floor.module_for(variant)).app
    served = {r.path: r for r in app.routes if isinstance(r, APIRoute)}
    lab = {r.path: r for r in ROUTES}
    for path in FLOOR_PATHS:
        assert served[path].response_model is lab[path].model, (variant, path)
    # def where the lab's variant has def (FastAPI's threadpool), async def elsewhere
    variant_module = importlib.import_module(registry.get(variant).module)
    floor_item = served["/items/{item_id}"].endpoint
    assert inspect.iscoroutinefunction(variant_module.read_item) == (
        inspect.iscoroutinefunction(floor_item)
    ), variant


def test_ratio_logic() -> None:
    lab = run_numbers(1000, {}, 2.0, 0.33, [0.01] * 1000)
    floor_run = run_numbers(1000, {}, 2.0, 0.30, [0.01] * 1000)
    assert lab["cpu_ms_per_request"] == 0.33 and lab["rps"] == 500.0
    assert pair("async", "items", lab, floor_run, 1.10)["ok"]
    over = pair("async", "items", lab, floor_run, 1.05)
    assert over["ratio"] == 1.1 and not over["ok"]
    # answers other than 200 make the ratio meaningless: not ok, whatever the limit
    broken = run_numbers(900, {"503": 100}, 2.0, 0.33, [0.01] * 900)
    assert pair("async", "items", broken, floor_run, 100)["ratio"] is None
    assert not pair("async", "items", broken, floor_run, 100)["ok"]


def _bench(out: Path, max_ratio: str) -> subprocess.CompletedProcess[str]:
    cmd = [
        sys.executable, "-m", "loadtest.bench_floor", "--variants", "async", "--scenarios",
        "items", "--users", "5", "--duration", "2", "--warmup", "0", "--rounds", "2",
        "--max-ratio", max_ratio, "--out", str(out),
    ]  # fmt: skip
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=110, check=False)


def _results(out: Path) -> tuple[dict, str]:  # type: ignore[type-arg]
    (folder,) = out.glob("*-bench-floor")
    return json.loads((folder / "results.json").read_text()), (folder / "report.md").read_text()


def test_bench_floor_fails_over_the_limit_and_its_numbers_add_up(tmp_path: Path) -> None:
    done = _bench(tmp_path, "0.01")  # no lab can be within 1% of a hundredth of its floor
    assert done.returncode == 1, done.stderr[-2000:]
    assert "async x items: lab/floor CPU per request" in done.stderr
    data, report = _results(tmp_path)
    assert data["passed"] is False and data["max_ratio"] == 0.01
    assert data["machine"]["cores"] >= 1 and data["versions"]["fastapi"]
    (p,) = data["pairs"]
    assert (p["variant"], p["scenario"]) == ("async", "items")
    for run in (p["lab"], p["floor"]):
        assert run["requests"] > 50 and run["other"] == {}
        assert run["cpu_s"] > 0
        assert run["cpu_ms_per_request"] == pytest.approx(
            1000 * run["cpu_s"] / run["requests"], rel=1e-3
        )
        assert run["rps"] == pytest.approx(run["requests"] / run["seconds"], rel=1e-2)
        assert 1.5 * 2 <= run["seconds"] <= 2 * 2 + 1  # two rounds of about 2 s each
    ratio = p["lab"]["cpu_ms_per_request"] / p["floor"]["cpu_ms_per_request"]
    assert p["ratio"] == pytest.approx(ratio, rel=1e-2)
    assert len(p["round_ratios"]) == 2 and p["ok"] is False
    assert f"| async | items | {p['lab']['rps']:.0f} | {p['floor']['rps']:.0f} |" in report
    assert "over the limit" in report and "wall time" in report


def test_bench_floor_passes_under_a_generous_limit(tmp_path: Path) -> None:
    done = _bench(tmp_path, "100")
    assert done.returncode == 0, done.stderr[-2000:]
    data, report = _results(tmp_path)
    assert data["passed"] is True and "every ratio <= 100.00" in report
