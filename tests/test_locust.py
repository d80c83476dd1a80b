"""The Locust users, shapes and web UI, run for real (`python -m locust`) against the fixture APIs.

Locust runs in subprocesses only: importing it here would monkey-patch this pytest process with
gevent. The headless runs are short and start together, so the module takes ~30 s.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from loadtest.generator.scenarios import SCENARIOS, Scenario
from loadtest.generator.targets import load_targets
from loadtest.orchestrate.run import Load, RunSpec
from services.lab.__main__ import parse_args
from services.lab.netcheck import free_port
from services.lab.ports import LOCUST_PORT
from services.lab.processes import locust_process, planned_ports, url_table
from services.lab.procs import Supervisor
from services.registry import NAMES as VARIANTS
from services.registry import VARIANTS as REGISTRY

REPO_ROOT = Path(__file__).resolve().parents[1]
CONF = ["--config", "loadtest/locust.conf"]  # locustfile = loadtest/locustfile.py, no shapes
WITH_SHAPES = [*CONF, "-f", "loadtest/locustfile.py,loadtest/shapes.py"]
RUN_SECONDS = 3
SMALL_RAMP = ["--step-users", "2", "--step-seconds", "1", "--max-users", "4"]  # 2 s in all
# User classes people type in the web UI and on the command line, and the docs name: a new
# scenario adds its own (no need to list it here), these must not change names.
DOCUMENTED_USER_CLASSES = {
    "ItemsUser", "DbUser", "UpstreamUser", "CpuPythonUser", "CpuNativeUser", "MixedUser",
    "WriteUser",
}  # fmt: skip


def targets_env(targets: dict[str, str]) -> str:
    return ",".join(f"{variant}={url}" for variant, url in targets.items())


@dataclass
class Run:
    """One headless Locust run in the background; `result()` waits for it."""

    name: str
    proc: subprocess.Popen[str]
    prefix: Path

    def result(self, timeout: float = 90.0) -> RunResult:
        try:
            output, _ = self.proc.communicate(timeout=timeout)
        finally:
            self.kill()
        path = Path(f"{self.prefix}.json")
        entries = json.loads(path.read_text()) if path.exists() else []
        return RunResult(self.proc.returncode, output, {e["name"]: e for e in entries})

    def kill(self) -> None:
        """Whatever is left of the run: its own session holds --processes' forked workers."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


@dataclass
class RunResult:
    """Read from --json-file, written once the run is over. (The --csv stats file is rewritten
    every second while Locust runs and can miss the last second's requests.)"""

    returncode: int
    output: str
    stats: dict[str, dict[str, Any]]  # request name -> Locust's stats entry

    def requests(self, name: str | None = None) -> int:
        return sum(e["num_requests"] for n, e in self.stats.items() if name in (None, n))

    def failures(self, name: str | None = None) -> int:
        return sum(e["num_failures"] for n, e in self.stats.items() if name in (None, n))

    def median_ms(self, name: str) -> float:
        times = sorted(
            (float(ms), count) for ms, count in self.stats[name]["response_times"].items()
        )
        seen = 0
        for ms, count in times:
            seen += count
            if 2 * seen >= self.requests(name):
                return ms
        raise AssertionError(f"no response times for {name}")

    def explain(self) -> str:
        return f"exit {self.returncode}; output tail:\n{self.output[-3000:]}"


def start_locust(name: str, args: list[str], out: Path, env: dict[str, str] | None = None) -> Run:
    prefix = out / name
    cmd = [sys.executable, "-m", "locust", *args, "--json-file", str(prefix), "--only-summary"]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("LOCUST_")}
    full_env.pop("LAB_TARGETS", None)
    proc = subprocess.Popen(
        cmd,
        cwd=REPO_ROOT,
        env={**full_env, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    return Run(name, proc, prefix)


def headless(*args: str, users: int = 5, seconds: int = RUN_SECONDS) -> list[str]:
    return [*CONF, "--headless", "-u", str(users), "-r", str(users), "-t", f"{seconds}s", *args]


def route_count(base_url: str, route: str) -> float:
    """Requests the API has answered on `route` (any status), from its Prometheus text."""
    text = httpx.get(f"{base_url}/metrics", timeout=10, trust_env=False).text
    pattern = rf'^lab_http_request_duration_seconds_count\{{[^}}]*route="{re.escape(route)}"'
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if re.match(pattern, line)
    )


# --- headless runs, started together ---------------------------------------------------------


COUNTED_ROUTES = ("/mixed", "/items/{item_id}")


@dataclass
class Runs:
    results: dict[str, RunResult]
    served: dict[tuple[str, str], float]  # (variant, route) -> requests answered meanwhile

    def __getitem__(self, name: str) -> RunResult:
        return self.results[name]


def served(apis: dict[str, str]) -> dict[tuple[str, str], float]:
    return {
        (v, route): route_count(url, route) for v, url in apis.items() for route in COUNTED_ROUTES
    }


@pytest.fixture(scope="module")
def runs(lab_apis: dict[str, str], lab_tmp: Path) -> Runs:
    """Every headless run of this module, in parallel (they are I/O-bound and short)."""
    out = lab_tmp / "locust-runs"
    out.mkdir(exist_ok=True)
    api = lab_apis["async"]
    targets = {"LAB_TARGETS": targets_env(lab_apis)}
    # Masters listen on free ports, not Locust's default 5557: other runs may be using it.
    processes_port, master_port = str(free_port()), str(free_port())
    # No --host: --variant picks the URL from LAB_TARGETS, also for forked worker processes.
    by_variant = [
        "MixedUser", "--variant", "offload", "--processes", "2",
        "--master-bind-port", processes_port, "--master-port", processes_port,
    ]  # fmt: skip
    # A master and two workers, as on several machines: the workers have no LAB_TARGETS and
    # use the URL the master decided.
    master = [
        "ItemsUser", "--variant", "sync", "--master", "--expect-workers", "2",
        "--master-bind-port", master_port,
    ]  # fmt: skip
    worker = [*CONF, "--worker", "--master-host", "127.0.0.1", "--master-port", master_port]
    before = served(lab_apis)
    started = [
        *(
            start_locust(s.name, headless(s.user_class, "--host", api, "--work", "5"), out)
            for s in SCENARIOS.values()
        ),
        start_locust("delay", headless("DbUser", "--host", api, "--delay-ms", "300"), out),
        start_locust("variant", headless(*by_variant, users=4), out, targets),
        # A given --host wins over --variant.
        start_locust(
            "host-wins",
            headless("MixedUser", "--variant", "sync", "--host", lab_apis["blocking"]),
            out,
            targets,
        ),
        # A shape ends the run on its own (no -t): 2 then 4 users, 1 s each.
        start_locust(
            "shape", [*WITH_SHAPES, "--headless", "ItemsUser", "--host", api, *SMALL_RAMP], out
        ),
        start_locust("master", headless(*master, users=4), out, targets),
        *(start_locust(f"worker-{i}", worker, out) for i in (1, 2)),
    ]
    try:
        results = {run.name: run.result() for run in started}
    finally:
        for run in started:
            run.kill()
    after = served(lab_apis)
    return Runs(results, {key: after[key] - before[key] for key in after})


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_every_scenario_runs_without_failures(scenario: str, runs: Runs) -> None:
    result = runs[scenario]
    assert result.returncode == 0, result.explain()
    name = SCENARIOS[scenario].request_name
    assert result.requests(name) > 0, result.explain()
    assert result.failures(name) == 0, result.explain()
    assert set(result.stats) == {name}, "one request name per scenario"


def test_delay_ms_reaches_the_server(runs: Runs) -> None:
    result = runs["delay"]
    assert result.returncode == 0, result.explain()
    assert result.requests("/io/db") > 0, result.explain()
    assert result.median_ms("/io/db") >= 300, result.explain()


def test_variant_picks_the_url_from_lab_targets(runs: Runs) -> None:
    for name in ("variant", "host-wins"):
        result = runs[name]
        assert result.returncode == 0, result.explain()
        assert result.requests("/mixed") > 0 and result.failures("/mixed") == 0, result.explain()
    # --variant offload (two worker processes) went to offload; --host beat --variant sync;
    # async served the mixed scenario's run. Locust and the servers agree (give or take the
    # last in-flight request).
    mixed = {variant: runs.served[variant, "/mixed"] for variant in VARIANTS}
    assert mixed["sync"] == 0
    for variant, run in (("offload", "variant"), ("blocking", "host-wins"), ("async", "mixed")):
        assert abs(mixed[variant] - runs[run].requests("/mixed")) <= 2, (variant, mixed)


def test_workers_follow_the_target_their_master_decided(runs: Runs) -> None:
    master = runs["master"]
    assert master.returncode == 0, master.explain()
    for worker in ("worker-1", "worker-2"):
        assert runs[worker].returncode == 0, runs[worker].explain()
    requests = master.requests("/items/[id]")
    assert requests > 0 and master.failures() == 0, master.explain()
    assert abs(runs.served["sync", "/items/{item_id}"] - requests) <= 2


def test_a_shape_drives_a_headless_run_to_its_end(runs: Runs) -> None:
    result = runs["shape"]
    assert result.returncode == 0, result.explain()
    assert "Shape test updating to 4 users" in result.output, result.explain()
    assert "Shape test completed" in result.output, result.explain()
    assert result.requests("/items/[id]") > 0 and result.failures() == 0, result.explain()


# --- the web UI, as `make lab` starts it -------------------------------------------------------


@pytest.fixture(scope="module")
def web_ui(lab_apis: dict[str, str], lab_tmp: Path) -> Iterator[str]:
    """The lab's own Locust process (services.lab.__main__.locust_process) on a free port,
    aimed at the fixture APIs."""
    port = free_port()
    with Supervisor() as supervisor:
        supervisor.start(
            locust_process(port, lab_tmp / "logs", targets=lab_apis, variant="sync"),
            health_timeout=60.0,
        )
        yield f"http://127.0.0.1:{port}"


def wait_for(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_web_ui_offers_variants_scenarios_and_shapes(web_ui: str) -> None:
    page = httpx.get(f"{web_ui}/", timeout=10, trust_env=False)
    assert page.status_code == 200
    found = re.search(r"templateArgs = (\{.*\})", page.text)
    assert found is not None, page.text[:500]
    args = json.loads(found.group(1))
    options = args["extra_options"]
    assert options["variant"]["choices"] == list(VARIANTS)
    assert options["variant"]["default_value"] == "sync"  # locust_process(variant=...)
    assert options["delay_ms"]["default_value"] == 200
    assert options["work"]["default_value"] == 20
    assert {"step_users", "step_seconds", "max_users", "baseline_users"} <= set(options)
    assert args["show_userclass_picker"] is True
    # Every scenario is offered (`users`), one ticked at first (generator/first_screen.py)
    assert sorted(args["users"]) == sorted(s.user_class for s in SCENARIOS.values())
    assert DOCUMENTED_USER_CLASSES <= set(args["users"])
    assert args["available_user_classes"] == ["UpstreamUser"]
    assert args["available_shape_classes"] == ["Default", "Spike", "StepRamp"]
    assert args["host"] == ""


def test_web_ui_swarm_follows_the_variant_chosen_for_each_run(
    web_ui: str, lab_apis: dict[str, str]
) -> None:
    """Two runs in one web UI session, Host left empty: each goes to its run's variant."""
    with httpx.Client(base_url=web_ui, timeout=10, trust_env=False) as ui:

        def stats() -> dict[str, Any]:
            answer: dict[str, Any] = ui.get("/stats/requests").json()
            return answer

        def upstream_requests() -> int:
            rows = [s for s in stats()["stats"] if s["name"] == "/io/upstream"]
            return rows[0]["num_requests"] if rows else 0

        for variant in ("offload", "blocking"):
            before = {v: route_count(url, "/io/upstream") for v, url in lab_apis.items()}
            form = {
                "user_count": "3",
                "spawn_rate": "3",
                "host": "",
                "variant": variant,
                "delay_ms": "50",
                "user_classes": "UpstreamUser",
                "shape_class": "Default",
            }
            started = ui.post("/swarm", data=form).json()
            assert started["success"] is True, started
            wait_for(lambda: upstream_requests() >= 5)
            assert ui.post("/stop").json()["success"] is True
            wait_for(lambda: stats()["state"] == "stopped")
            current = stats()
            assert current["fail_ratio"] == 0, current["errors"]
            after = {v: route_count(url, "/io/upstream") for v, url in lab_apis.items()}
            grew = {v for v in lab_apis if after[v] > before[v]}
            assert grew == {variant}


def test_web_ui_runs_an_open_loop_its_users_share_the_rate(
    web_ui: str, lab_apis: dict[str, str]
) -> None:
    """Arrival rate 30/s in the form with 3 users: 30 requests a second in all (each user
    keeps 10/s), not 30 per user, and none of them fails."""
    with httpx.Client(base_url=web_ui, timeout=10, trust_env=False) as ui:

        def upstream() -> dict[str, Any]:
            rows = [
                s for s in ui.get("/stats/requests").json()["stats"] if s["name"] == "/io/upstream"
            ]
            return rows[0] if rows else {"num_requests": 0, "num_failures": 0}

        form = {
            "user_count": "3",
            "spawn_rate": "100",
            "host": "",
            "variant": "async",
            "delay_ms": "50",
            "arrival_rate": "30",
            "arrivals": "fixed",
            "user_classes": "UpstreamUser",
            "shape_class": "Default",
        }
        before = route_count(lab_apis["async"], "/io/upstream")
        started_at = time.monotonic()
        started = ui.post("/swarm", data=form).json()
        assert started["success"] is True, started
        time.sleep(3)
        assert ui.post("/stop").json()["success"] is True
        elapsed = time.monotonic() - started_at
        wait_for(lambda: ui.get("/stats/requests").json()["state"] == "stopped")
        row = upstream()
        assert row["num_failures"] == 0
        assert 0.75 * 30 * elapsed <= row["num_requests"] <= 1.1 * 30 * elapsed
        served = route_count(lab_apis["async"], "/io/upstream") - before
        assert served == pytest.approx(row["num_requests"], abs=3)
        # and the next run of the session, rate 0 again, is a closed loop that runs as before
        form |= {"arrival_rate": "0", "user_count": "2"}
        assert ui.post("/swarm", data=form).json()["success"] is True
        wait_for(lambda: upstream()["num_requests"] >= 10)
        assert ui.post("/stop").json()["success"] is True


# --- shapes: tick() without a run -----------------------------------------------------------

TICKS = textwrap.dedent(
    """
    import importlib, json, os, sys
    from argparse import Namespace
    from types import SimpleNamespace
    from loadtest.generator import shapes

    def ticks(shape, times, **options):
        shape.runner = SimpleNamespace(environment=SimpleNamespace(parsed_options=Namespace(
            step_users=50, step_seconds=30, max_users=400, baseline_users=20) ))
        vars(shape.runner.environment.parsed_options).update(options)
        out = []
        for t in times:
            shape.get_run_time = lambda t=t: t
            out.append(shape.tick())
        return out

    result = {
        "ramp": ticks(shapes.StepRamp(), [0, 29.9, 30, 59.9, 60, 89.9, 90],
                      step_users=50, step_seconds=30, max_users=120),
        "ramp_one_step": ticks(shapes.StepRamp(), [0, 9.9, 10],
                               step_users=50, step_seconds=10, max_users=30),
        "spike": ticks(shapes.Spike(), [0, 9.9, 10, 19.9, 20, 29.9, 30],
                       baseline_users=20, max_users=200, step_seconds=10),
        "abstract": {},
    }
    for only in ("", "Spike", "StepRamp"):
        os.environ["LAB_SHAPE"] = only
        importlib.reload(shapes)
        result["abstract"][only] = [shapes.StepRamp.abstract, shapes.Spike.abstract]
    os.environ["LAB_SHAPE"] = "Nope"
    try:
        importlib.reload(shapes)
    except ValueError as exc:
        result["bad"] = str(exc)
    print(json.dumps(result))
    """
)


@pytest.fixture(scope="module")
def shape_ticks() -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "LAB_SHAPE"}
    proc = subprocess.run(
        [sys.executable, "-c", TICKS],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    ticks: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return ticks


def test_step_ramp_adds_a_step_every_period_then_stops(shape_ticks: dict[str, Any]) -> None:
    assert shape_ticks["ramp"] == [
        [50, 50], [50, 50], [100, 50], [100, 50], [120, 50], [120, 50], None,
    ]  # fmt: skip
    assert shape_ticks["ramp_one_step"] == [[30, 50], [30, 50], None]


def test_spike_goes_up_and_back_to_baseline(shape_ticks: dict[str, Any]) -> None:
    assert shape_ticks["spike"] == [
        [20, 200], [20, 200], [200, 200], [200, 200], [20, 200], [20, 200], None,
    ]  # fmt: skip


def test_lab_shape_keeps_one_shape_for_headless_runs(shape_ticks: dict[str, Any]) -> None:
    assert shape_ticks["abstract"] == {
        "": [False, False],
        "Spike": [True, False],
        "StepRamp": [False, True],
    }
    assert "LAB_SHAPE" in shape_ticks["bad"]


# --- make lab ---------------------------------------------------------------------------------


def test_lab_starts_locust_unless_told_not_to() -> None:
    assert parse_args([]).locust is True
    assert parse_args(["--no-locust"]).locust is False
    assert planned_ports(["sync"])["locust"] == LOCUST_PORT
    assert "locust" not in planned_ports(["sync"], locust=False)
    assert f"http://127.0.0.1:{LOCUST_PORT}" in url_table(["sync"], "dsn", locust=True)
    assert f"{LOCUST_PORT} reserved" in url_table(["sync"], "dsn", locust=False)


def test_lab_locust_process_is_the_web_ui_with_users_and_shapes() -> None:
    proc = locust_process()
    assert proc.cmd[1:3] == ["-m", "locust"]
    assert "loadtest/locustfile.py,loadtest/shapes.py" in proc.cmd
    assert "--class-picker" in proc.cmd
    assert proc.cmd[proc.cmd.index("--web-host") + 1] == "127.0.0.1"
    assert proc.cmd[proc.cmd.index("--web-port") + 1] == str(LOCUST_PORT)
    assert proc.health_url == f"http://127.0.0.1:{LOCUST_PORT}/"
    assert load_targets(proc.env["LAB_TARGETS"]) == {
        name: f"http://127.0.0.1:{v.port}" for name, v in REGISTRY.items()
    }


# --- the scenario table and the targets: everything derived from one declaration ----------------


def test_the_user_classes_are_made_from_the_scenario_table() -> None:
    """In a subprocess: importing Locust here would monkey-patch pytest with gevent."""
    code = textwrap.dedent(
        """
        import json, runpy
        names = runpy.run_path("loadtest/locustfile.py")
        from loadtest.generator.scenarios import SCENARIOS
        from locust import FastHttpUser
        found = {}
        for s in SCENARIOS.values():
            cls = names[s.user_class]
            (task,) = cls.tasks
            found[s.user_class] = [issubclass(cls, FastHttpUser), cls.abstract,
                                   sorted(task.locust_tag_set)]
        print(json.dumps(found))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert list(found) == [s.user_class for s in SCENARIOS.values()]
    assert DOCUMENTED_USER_CLASSES <= set(found)
    for s in SCENARIOS.values():
        assert found[s.user_class] == [True, False, [s.name]]


@pytest.mark.parametrize("scenario", list(SCENARIOS.values()), ids=list(SCENARIOS))
def test_a_headless_run_passes_only_the_arguments_its_path_uses(scenario: Scenario) -> None:
    load = Load(users=3, spawn_rate=3, duration_s=5, delay_ms=123, work=7)
    cmd = RunSpec(scenario, "http://127.0.0.1:1", load, Path("/tmp/x")).command()
    assert ("--delay-ms" in cmd) == ("{delay_ms}" in scenario.path)
    assert ("--work" in cmd) == ("{work}" in scenario.path)
    if "--delay-ms" in cmd:
        assert cmd[cmd.index("--delay-ms") + 1] == "123"
    assert scenario.user_class in cmd
    # every field its path names is filled: from the arguments, or drawn per request
    path = scenario.url({"delay_ms": 123, "work": 7})
    assert "{" not in path and path.startswith("/")


def test_lab_targets_variant_pairs_override_the_native_ports() -> None:
    got = load_targets("sync=http://api-sync:8000/, threaded=https://example.org:9")
    assert got["sync"] == "http://api-sync:8000"
    assert got["threaded"] == "https://example.org:9"
    assert got["async"] == f"http://127.0.0.1:{REGISTRY['async'].port}"
    assert list(got) == list(VARIANTS)
    assert load_targets("") == {n: f"http://127.0.0.1:{v.port}" for n, v in REGISTRY.items()}


def test_lab_targets_template_applies_to_every_registry_variant() -> None:
    got = load_targets("http://api-{variant}:8000/")
    assert got == {name: f"http://api-{name}:8000" for name in VARIANTS}
    assert got["threaded"] == "http://api-threaded:8000"


@pytest.mark.parametrize(
    "spec",
    [
        "sync",  # no url
        "nope=http://x:1",  # unknown variant
        "sync=ftp://x:1",  # not http(s)
        "http://api-{variant}:8000,http://other-{variant}:1",  # two templates
        "sync=http://api-{variant}:8000",  # a template inside the pair form
        "api-{variant}:8000",  # a template without a scheme
    ],
)
def test_lab_targets_bad_input_says_what_is_expected(spec: str) -> None:
    with pytest.raises(ValueError, match="LAB_TARGETS"):
        load_targets(spec)


def test_locust_refuses_a_malformed_lab_targets(tmp_path: Path) -> None:
    run = start_locust("bad-targets", headless("ItemsUser"), tmp_path, {"LAB_TARGETS": "x=y"})
    result = run.result(timeout=60)
    assert result.returncode != 0 and "LAB_TARGETS" in result.output, result.explain()
