"""The dashboard's call detail shows figures a person reads (323 ms, not 323.4017810000296),
in a real browser (headless Chromium through Playwright, as tests/test_dashboard_browser.py)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright
from prometheus_client import CollectorRegistry

from aivitals.model import Call, Score
from aivitals.server import create_app
from aivitals.store.sql import SqlStore
from tests.support.realservers import need
from tests.support.server_app import NOW, build_runtime
from tests.support.servers import serve_in_thread
from tests.test_dashboard_browser import CHROMIUM_FLAGS, TIMEOUT_MS, loaded

pytestmark = pytest.mark.slow

CALL = Call(
    provider="openai",
    model="gpt-4o",
    latency_ms=323.4017810000296,
    ttft_ms=45.678912,
    input_tokens=12_345,
    output_tokens=678,
    cost_usd=Decimal("0.000123456789"),
    price_source="test",
    started_at=NOW - timedelta(minutes=30),
)


@pytest.fixture
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


@pytest.fixture
def origin(tmp_path: Path) -> Iterator[str]:
    store = SqlStore.open(tmp_path / "aivitals.db")
    store.write([CALL], [Score(call_id=CALL.id, name="relevance", value=0.8333333333333334)])
    runtime = build_runtime(store)
    app = create_app(runtime=runtime, store=store, registry=CollectorRegistry(), now=lambda: NOW)
    try:
        with serve_in_thread(app) as url:
            yield url
    finally:
        runtime.recorder.close()
        store.close()


def test_the_call_detail_shows_rounded_figures(browser: Browser, origin: str) -> None:
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(origin + "/?since=24h")
    loaded(page, 1)
    page.locator(f"[data-testid=calls] tr[data-call-id='{CALL.id}']").click()
    page.wait_for_function(f"document.body.dataset.call === {CALL.id!r}")
    rows = page.locator("#call-fields tr").all_inner_texts()
    fields = dict(line.split("\t", 1) for line in rows)
    assert fields["latency_ms"] == "323"
    assert fields["ttft_ms"] == "45.7"
    assert fields["input_tokens"] == "12,345"
    assert fields["cost_usd"] == "$0.000123"
    scores = page.locator("[data-testid=call-scores] tbody tr").all_inner_texts()
    assert scores[0].split("\t")[:2] == ["relevance", "0.833"]
