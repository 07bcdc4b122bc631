"""The dashboard's cache and guardrails row in a real browser (headless Chromium through
Playwright), drawn from GET /api/v1/cache over calls posted through the ingest API; the figures
it must show are worked out from the posted bodies (tests/test_cache_impact.py's `expected`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Page

from aivitals.store.sql import SqlStore
from tests.support.dashboard import chromium_page, served_store
from tests.support.realservers import poll
from tests.test_cache_impact import LEVEL_NAMES, cache_history, expected
from tests.test_dashboard_browser import CHROMIUM_FLAGS, TIMEOUT_MS

pytestmark = pytest.mark.slow

BODIES = cache_history(600, seed=5)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, TestClient]]:
    store = SqlStore.open(tmp_path_factory.mktemp("cache-dashboard") / "aivitals.db")
    with served_store(store) as (url, client):
        for first in range(0, len(BODIES), 500):
            reply = client.post("/api/v1/calls", json={"calls": BODIES[first : first + 500]})
            assert reply.status_code == 202, reply.text
        # The recorder writes in the background: poll until every call of the window is stored.
        poll("every call stored", lambda: stored_calls(client) == expected(BODIES)["calls"])
        yield url, client


@pytest.fixture
def page(served: tuple[str, TestClient]) -> Iterator[Page]:
    with chromium_page(CHROMIUM_FLAGS, TIMEOUT_MS) as opened:
        yield opened


def drawn(page: Page, loads: int) -> None:
    page.wait_for_function(
        f"Number(document.getElementById('cache').dataset.loads || 0) >= {loads}"
        " && document.getElementById('cache').dataset.state === 'ready'"
    )


def money(value: Any) -> str:
    """As the row writes dollars (and `report_tables.money`)."""
    value = float(value)
    if value >= 1:
        return f"${value:,.2f}"
    return f"${value:.4f}" if value >= 0.01 else f"${value:.6f}"


def shown(page: Page, test_id: str) -> str:
    return page.get_by_test_id(test_id).inner_text().strip()


def stored_calls(client: TestClient) -> int:
    reply = client.get("/api/v1/summary", params={"since": "24h"})
    return int(reply.json()["summary"]["calls"])


def test_the_row_shows_each_level_and_the_guardrails(
    page: Page, served: tuple[str, TestClient], tmp_path: Path
) -> None:
    url, _ = served
    want = expected(BODIES)
    page.goto(url)
    drawn(page, 1)
    hits = want["levels"]["exact"]["calls"] + want["levels"]["semantic"]["calls"]
    ratio = hits / (hits + want["levels"]["miss"]["calls"])
    assert shown(page, "kpi-cache-hit-ratio") == f"{ratio * 100:.1f}%"
    saved = sum(f["saved_usd"] for f in want["levels"].values())
    assert shown(page, "kpi-cache-saved") == money(saved)
    assert shown(page, "kpi-guardrail-blocks") == f"{want['blocks']:,}"
    rows = page.locator("[data-testid=cache-levels] tbody tr")
    assert [rows.nth(i).get_attribute("data-level") for i in range(rows.count())] == LEVEL_NAMES
    for name in LEVEL_NAMES:
        figures = want["levels"][name]
        cells = page.locator(f"[data-testid=cache-levels] tr[data-level={name}] td")
        texts = [cells.nth(i).inner_text().strip() for i in range(cells.count())]
        assert texts[1] == f"{figures['calls']:,}", name
        assert texts[2] == f"{figures['share'] * 100:.1f}%", name
        if name in ("exact", "semantic"):
            assert texts[4] == money(figures["saved_usd"]), name
            assert texts[6] == f"{round(figures['latency_p50_ms']):,}", name
            assert texts[7] == f"{round(figures['latency_p95_ms']):,}", name
    miss = page.locator("[data-testid=cache-levels] tr[data-level=miss] td")
    assert (
        miss.nth(6).inner_text().strip() == f"{round(want['levels']['miss']['latency_p50_ms']):,}"
    )
    actions = page.locator("[data-testid=guardrail-actions] tbody tr")
    found = {
        (
            actions.nth(i).get_attribute("data-guardrail"),
            actions.nth(i).get_attribute("data-action"),
        ): actions.nth(i).locator("td").nth(2).inner_text().strip()
        for i in range(actions.count())
    }
    assert found == {key: f"{n:,}" for key, n in want["actions"].items()}
    assert "estimated" in shown(page, "cache-notes")
    page.get_by_test_id("row-cache").screenshot(path=str(tmp_path / "cache.png"))


def test_the_row_follows_the_dashboard_s_filters(
    page: Page, served: tuple[str, TestClient]
) -> None:
    url, _ = served
    page.goto(f"{url}/#since=24h&model=m-a")
    drawn(page, 1)
    want = expected([body for body in BODIES if body["model"] == "m-a"])
    cells = page.locator("[data-testid=cache-levels] tr[data-level=semantic] td")
    assert cells.nth(1).inner_text().strip() == f"{want['levels']['semantic']['calls']:,}"
    assert shown(page, "kpi-guardrail-blocks") == f"{want['blocks']:,}"
