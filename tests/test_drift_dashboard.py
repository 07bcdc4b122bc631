"""The dashboard's drift row in a real browser (headless Chromium through Playwright), drawn
from GET /api/v1/drift over a generated history where one model slowed down in the last hour."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Page

from aivitals.store.sql import SqlStore
from tests.support.dashboard import chromium_page, served_store
from tests.support.drift_history import Change, history
from tests.support.server_app import NOW
from tests.test_dashboard_browser import CHROMIUM_FLAGS, TIMEOUT_MS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, TestClient]]:
    store = SqlStore.open(tmp_path_factory.mktemp("drift-dashboard") / "aivitals.db")
    step = Change(NOW - timedelta(hours=1), model="m-a", latency_factor=1.5)
    history(store, now=NOW, days=3, seed=41, changes=(step,))
    with served_store(store) as served:
        yield served


@pytest.fixture
def page(served: tuple[str, TestClient]) -> Iterator[Page]:
    with chromium_page(CHROMIUM_FLAGS, TIMEOUT_MS) as opened:
        yield opened


def drawn(page: Page, loads: int) -> None:
    page.wait_for_function(
        f"Number(document.getElementById('drift').dataset.loads || 0) >= {loads}"
        " && document.getElementById('drift').dataset.state === 'ready'"
    )


def test_the_row_lists_each_signal_and_flags_the_slowed_model(
    page: Page, served: tuple[str, TestClient], tmp_path: Path
) -> None:
    url, client = served
    page.goto(url)
    drawn(page, 1)
    assert "against trailing 7d" in page.get_by_test_id("drift-title").inner_text()
    page.get_by_test_id("drift-baseline").fill("2d")
    page.get_by_test_id("drift-by").select_option("model")
    drawn(page, 2)
    page.get_by_test_id("drift-run").click()
    drawn(page, 3)
    api = client.get("/api/v1/drift", params={"baseline": "2d", "by": "model"}).json()["drift"]
    shown = {r["signal"] for r in api["results"] if r["baseline_n"] or r["current_n"]}
    rows = page.locator("[data-testid=drift-table] tbody tr")
    assert rows.count() == sum(1 for r in api["results"] if r["signal"] in shown)
    latency = page.locator("[data-testid=drift-table] tr[data-signal=latency_ms][data-group=m-a]")
    assert latency.get_attribute("data-verdict") == "significant"
    expected = next(
        r for r in api["results"] if r["signal"] == "latency_ms" and r["group"]["model"] == "m-a"
    )
    assert f"PSI {expected['value']:.2f}" in latency.inner_text()
    other = page.locator("[data-testid=drift-table] tr[data-signal=latency_ms][data-group=m-b]")
    assert other.get_attribute("data-verdict") == "stable"
    assert "latency ms p50" in page.get_by_test_id("drift-notes").inner_text()
    page.get_by_test_id("row-drift").screenshot(path=str(tmp_path / "drift.png"))


def test_a_bad_baseline_is_said_in_the_row(page: Page, served: tuple[str, TestClient]) -> None:
    page.goto(served[0])
    drawn(page, 1)
    page.get_by_test_id("drift-baseline").fill("pinned:nope")
    page.get_by_test_id("drift-run").click()
    drawn(page, 2)
    assert "no pinned baseline 'nope'" in page.get_by_test_id("drift-title").inner_text()
