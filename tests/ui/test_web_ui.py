"""Locust's web UI in a real headless browser (Debian's chromium driven by Playwright), as a
trainee uses it: the first screen, a variant and a scenario, Start, the Server tab, the chart
page, Stop. `make test-ui` runs it (plain `make test` skips the `ui` marker); on failure a
screenshot lands in results/.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services.lab.netcheck import free_port
from services.lab.processes import locust_process
from services.lab.procs import Supervisor

pytestmark = pytest.mark.ui

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
VARIANT = "sync"
SCENARIO = "UpstreamUser"


@pytest.fixture(scope="module")
def web_ui(lab_apis: dict[str, str], lab_tmp: Path) -> Iterator[str]:
    """The lab's own Locust web UI process on a free port, aimed at the fixture APIs, with
    a variant other than the one the test picks preselected."""
    port = free_port()
    with Supervisor() as supervisor:
        supervisor.start(
            locust_process(port, lab_tmp / "logs", targets=lab_apis, variant="async"),
            health_timeout=60.0,
        )
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def page(request: pytest.FixtureRequest) -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} missing: `make test-ui` installs Debian's chromium")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.set_default_timeout(20_000)
        try:
            yield page
        finally:
            report = getattr(request.node, "rep_call", None)
            if report is None or report.failed:
                results = REPO_ROOT / "results"
                results.mkdir(exist_ok=True)
                for i, open_page in enumerate(context.pages):
                    shot = results / f"ui-failure-{request.node.name}-{int(time.time())}-{i}.png"
                    open_page.screenshot(path=str(shot), full_page=True)
            browser.close()


def server_row(page: Any, variant: str) -> dict[str, str]:
    """The Server tab's row of `variant` (marked ▶ when loaded): column title -> text."""
    titles = [t.strip() for t in page.locator("table thead th").all_inner_texts()]
    for row in page.locator("table tbody tr").all():
        cells = [c.strip() for c in row.locator("td").all_inner_texts()]
        if cells and cells[0] in (variant, f"▶ {variant}"):
            return dict(zip(titles, cells, strict=False))
    return {}


def test_a_trainee_runs_a_variant_and_reads_the_server_tab_and_charts(
    web_ui: str, page: Any
) -> None:
    page.goto(web_ui)
    form = page.locator("form")
    form.get_by_role("button", name="Start").wait_for()
    # The first screen: no notice asking for a Host; one scenario ticked, listed first.
    assert "has no host attribute set" not in page.content()
    rows = page.locator("tr", has=page.locator("input[type=checkbox]")).filter(has_text="User")
    ticked = [r.inner_text().split()[0] for r in rows.all() if r.locator("input").is_checked()]
    assert ticked == [SCENARIO], ticked

    # Pick the variant (a custom parameter) and, explicitly, the scenario.
    page.get_by_text("Custom parameters", exact=True).click()
    page.locator("select[name=variant]").select_option(VARIANT)
    scenario = rows.filter(has_text=SCENARIO).locator("input")
    if not scenario.is_checked():
        scenario.check()
    page.locator("input[name=userCount]").fill("60")
    page.locator("input[name=spawnRate]").fill("60")
    form.get_by_role("button", name="Start").click()

    # The Server tab: the loaded variant's row, with requests in flight and a verdict.
    page.get_by_role("tab", name="Server").click()
    deadline = time.monotonic() + 30
    row: dict[str, str] = {}
    while time.monotonic() < deadline:
        row = server_row(page, VARIANT)
        in_flight = row.get("In flight now / peak", "0").split("/")[0].strip()
        if row.get("Variant (▶ loaded)", "").startswith("▶") and in_flight not in ("0", "-"):
            if row.get("What limits throughput"):
                break
        page.wait_for_timeout(500)
    else:
        raise AssertionError(f"no loaded {VARIANT} row with requests in flight: {row}")
    assert row["What limits throughput"].startswith(("threadpool", "none")), row

    # The chart page, served by Locust: uPlot drew points on its canvases.
    charts = page.context.new_page()
    charts.goto(f"{web_ui}/server")
    charts.wait_for_function("window.labCharts && window.labCharts[0].data[0].length >= 3")
    assert charts.locator("#variant").input_value() == VARIANT
    inked = charts.evaluate(
        """() => [...document.querySelectorAll('canvas')].map(canvas => {
            const pixels = canvas.getContext('2d')
                .getImageData(0, 0, canvas.width, canvas.height).data;
            let inked = 0;
            for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) inked++;
            return inked;
        })"""
    )
    assert len(inked) == 5 and all(count > 100 for count in inked), inked
    series = charts.evaluate("window.labCharts.map(chart => chart.series.length)")
    assert series == [3, 3, 3, 3, 2], series
    charts.close()

    # Stop; the form comes back through "New".
    page.get_by_role("button", name="Stop").click()
    page.get_by_role("button", name="New").wait_for()
