"""The dashboard's compare row in a real browser (headless Chromium through Playwright), drawn
from GET /api/v1/compare over the seeded prompt versions of tests/test_compare.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Page

from aivitals.store.sql import SqlStore
from tests.support.dashboard import chromium_page, served_store
from tests.support.server_app import NOW
from tests.test_compare import write_versions
from tests.test_dashboard_browser import CHROMIUM_FLAGS, TIMEOUT_MS, loaded

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, TestClient]]:
    store = SqlStore.open(tmp_path_factory.mktemp("compare-dashboard") / "aivitals.db")
    write_versions(store, now=NOW)
    with served_store(store) as served:
        yield served


@pytest.fixture
def page(served: tuple[str, TestClient]) -> Iterator[Page]:
    with chromium_page(CHROMIUM_FLAGS, TIMEOUT_MS) as opened:
        yield opened


def compared(page: Page, loads: int) -> None:
    page.wait_for_function(
        f"Number(document.getElementById('compare').dataset.loads || 0) >= {loads}"
        " && document.getElementById('compare').dataset.state === 'ready'"
    )


def verdicts(page: Page) -> dict[str, str]:
    rows = page.locator("[data-testid=compare-table] tbody tr")
    return {
        rows.nth(i).get_attribute("data-measure") or "": rows.nth(i).get_attribute("data-verdict")
        or ""
        for i in range(rows.count())
    }


def test_the_row_compares_the_two_most_frequent_then_the_versions_asked(
    page: Page, served: tuple[str, TestClient], tmp_path: Path
) -> None:
    url, client = served
    page.goto(url + "/#since=7d")
    loaded(page, 1)
    compared(page, 1)
    title = page.get_by_test_id("compare-title").inner_text()
    assert title == "prompt_version: B v3 (400 calls) against A v1 (400 calls)"
    assert set(verdicts(page).values()) == {"no significant difference"}
    assert "no regression" in page.get_by_test_id("compare-notes").inner_text()

    page.get_by_test_id("compare-a").fill("v1")
    page.get_by_test_id("compare-b").fill("v2")
    page.get_by_test_id("compare-run").click()
    compared(page, 2)
    found = verdicts(page)
    api = client.get("/api/v1/compare", params={"since": "7d", "a": "v1", "b": "v2"}).json()
    assert found == {m["name"]: m["verdict"] for m in api["comparison"]["measures"]}
    assert found["latency_p50_ms"] == "regression"
    p50 = page.locator("[data-testid=compare-table] tr[data-measure=latency_p50_ms] td")
    difference = next(m for m in api["comparison"]["measures"] if m["name"] == "latency_p50_ms")
    assert p50.nth(3).inner_text() == f"+{round(difference['difference'])}"
    assert "regressions: latency p50 (ms)" in page.get_by_test_id("compare-notes").inner_text()
    page.get_by_test_id("row-compare").screenshot(path=str(tmp_path / "compare.png"))


def test_a_field_with_no_values_says_so(page: Page, served: tuple[str, TestClient]) -> None:
    url, _ = served
    page.goto(url + "/#since=7d")
    loaded(page, 1)
    compared(page, 1)
    page.get_by_test_id("compare-by").select_option("environment")
    compared(page, 2)
    assert "environment takes no value" in page.get_by_test_id("compare-title").inner_text()
    assert page.locator("[data-testid=compare-table] tr").count() == 0
