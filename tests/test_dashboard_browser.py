"""The dashboard in a real browser: headless Chromium (Playwright) over a served demo store.

Checks every row draws charts with data, a filter and a time range change the figures, and a
call opens with its id, trace and scores; takes the screenshots of docs/img (dashboard.png, the
first screen, dashboard-full.png and dashboard-call.png), writing them there only with
`AIVITALS_RETAKE_SCREENSHOTS=1` (a run must not change the tree). Chromium comes from Debian
(`scripts/install-test-servers chromium`); Playwright drives it and never downloads a browser.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.support.dashboard import demo_app
from tests.support.realservers import need
from tests.support.servers import serve_in_thread

pytestmark = pytest.mark.slow

DOCS_IMG = Path(__file__).resolve().parent.parent / "docs" / "img"


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the screenshots go: docs/img when retaking them, else a temporary folder."""
    if os.environ.get("AIVITALS_RETAKE_SCREENSHOTS") == "1":
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        return DOCS_IMG
    return tmp_path_factory.mktemp("screenshots")


ROWS = ("cost", "latency", "tokens", "quality", "health")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = need("chromium")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium, headless=True, args=CHROMIUM_FLAGS
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    path = tmp_path_factory.mktemp("dashboard") / "aivitals.db"
    with demo_app(path, calls=1200) as app, serve_in_thread(app) as url:
        yield url


@pytest.fixture
def page(browser: Browser, origin: str) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    opened.set_default_timeout(TIMEOUT_MS)
    try:
        yield opened
    finally:
        context.close()
    assert errors == [], errors


def loaded(page: Page, loads: int) -> None:
    """Waits until the page has finished its ``loads``-th refresh."""
    # Right after a navigation the new document may have no body yet.
    page.wait_for_function(f"document.body && Number(document.body.dataset.loads) >= {loads}")
    assert page.locator("#status.error").count() == 0, page.inner_text("#status")


def traces(page: Page, chart_id: str) -> list[int]:
    """How many points each Plotly trace of a chart holds."""
    points: list[int] = page.evaluate(
        """id => (document.getElementById(id).data || []).map(
            t => Math.max((t.x || []).filter(v => v != null).length,
                          (t.y || []).filter(v => v != null).length))""",
        chart_id,
    )
    return points


def text(page: Page, testid: str) -> str:
    return page.get_by_test_id(testid).inner_text()


def test_every_row_draws_charts_with_data(page: Page, origin: str, shots: Path) -> None:
    page.goto(origin + "/")
    loaded(page, 1)
    for row in ROWS:
        charts = page.locator(f"[data-testid=row-{row}] .chart")
        ids = [charts.nth(i).get_attribute("id") or "" for i in range(charts.count())]
        assert len(ids) >= 2, row
        for chart_id in ids:
            counts = traces(page, chart_id)
            assert counts and all(n > 0 for n in counts), (row, chart_id, counts)
    assert text(page, "kpi-calls") == "1,200"
    assert text(page, "kpi-spend").startswith("$")
    assert page.locator("[data-testid=providers] tbody tr").count() == 2
    assert "no alert engine configured" in text(page, "alerts")
    assert page.locator("[data-testid=calls] tr[data-call-id]").count() == 25
    page.screenshot(path=str(shots / "dashboard.png"))
    page.screenshot(path=str(shots / "dashboard-full.png"), full_page=True)
    assert (shots / "dashboard.png").stat().st_size > 10_000


def test_a_filter_and_a_time_range_change_the_figures(page: Page, origin: str) -> None:
    page.goto(origin + "/")
    loaded(page, 1)
    everything = (text(page, "kpi-calls"), text(page, "kpi-spend"))
    assert traces(page, "chart-spend-model") == [4]

    page.get_by_test_id("filter-model").select_option("gpt-4o")
    loaded(page, 2)
    one_model = (text(page, "kpi-calls"), text(page, "kpi-spend"))
    assert one_model != everything
    assert traces(page, "chart-spend-model") == [1]
    models = page.locator("[data-testid=calls] tr[data-call-id] td:nth-child(2)").all_inner_texts()
    assert models and set(models) == {"gpt-4o"}
    assert "model=gpt-4o" in page.url

    page.get_by_test_id("range").select_option("1h")
    loaded(page, 3)
    last_hour = int(text(page, "kpi-calls").replace(",", ""))
    assert 0 < last_hour < int(one_model[0].replace(",", ""))
    assert "since=1h" in page.url
    # A reload keeps the view: the state is in the address.
    page.reload()
    loaded(page, 1)
    assert int(text(page, "kpi-calls").replace(",", "")) == last_hour


def test_a_call_opens_with_its_id_trace_and_scores(page: Page, origin: str, shots: Path) -> None:
    page.goto(origin + "/")
    loaded(page, 1)
    row = page.locator("[data-testid=calls] tr[data-call-id]:not([data-scores='0'])").first
    call_id = row.get_attribute("data-call-id")
    assert call_id
    row.click()
    page.wait_for_function(f"document.body.dataset.call === {call_id!r}")
    detail = page.get_by_test_id("call-detail")
    assert detail.is_visible()
    assert text(page, "call-id") == call_id
    scores = page.locator("[data-testid=call-scores] tbody tr").all_inner_texts()
    assert scores and scores[0].startswith("relevance")
    assert page.locator("[data-testid=call-trace] tbody tr").count() == 2
    assert "(this call)" in text(page, "call-trace")
    fields = dict(line.split("\t", 1) for line in page.locator("#call-fields tr").all_inner_texts())
    assert fields["id"] == call_id
    assert text(page, "call-trace-id") == fields["trace_id"]
    assert traces(page, "chart-stages")
    detail.screenshot(path=str(shots / "dashboard-call.png"))


def test_with_a_token_the_form_signs_the_browser_in(browser: Browser, tmp_path: Path) -> None:
    with (
        demo_app(tmp_path / "aivitals.db", calls=50, dashboard_token="s3cret") as app,
        serve_in_thread(app) as url,
    ):
        context = browser.new_context()
        try:
            page = context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            login = page.goto(url + "/")
            assert login is not None and login.status == 401
            page.fill("input[name=token]", "s3cret")
            page.click("button[type=submit]")
            loaded(page, 1)
            assert page.url == url + "/#since=24h"  # the token is out of the address
            assert text(page, "kpi-calls") == "50"
            cookie = next(c for c in context.cookies() if c["name"] == "aivitals_dashboard")
            assert cookie.get("httpOnly") and "s3cret" not in cookie.get("value", "")
        finally:
            context.close()


def test_active_alerts_come_from_the_alert_endpoint_when_there_is_one(
    browser: Browser, tmp_path: Path
) -> None:
    firing = {"alerts": [{"name": "p95 latency", "severity": "critical", "summary": "6,100 ms"}]}
    with demo_app(tmp_path / "aivitals.db", calls=50) as app:
        # Stands in for the alert engine's route, which another module adds.
        app.add_api_route("/api/v1/alerts", lambda: firing)
        with serve_in_thread(app) as url:
            context = browser.new_context()
            try:
                page = context.new_page()
                page.set_default_timeout(TIMEOUT_MS)
                page.goto(url + "/")
                loaded(page, 1)
                alerts = text(page, "alerts")
                assert "p95 latency: 6,100 ms" in alerts
                assert "critical" in alerts
                assert "no alert engine" not in alerts
            finally:
                context.close()
