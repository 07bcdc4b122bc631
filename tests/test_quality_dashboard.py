"""The quality row's rates and outcomes: ``GET /api/v1/quality/groups``, and the dashboard
drawing them in a real browser (headless Chromium, as tests/test_dashboard_browser.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, Page, sync_playwright
from sklearn import metrics  # type: ignore[import-untyped]

from tests.support.dashboard import demo_app, demo_verdicts
from tests.support.realservers import need
from tests.support.server_app import Served, call_json, serve_app, served_at
from tests.support.servers import serve_in_thread

CALLS = 1200
LABELLED = [("spam", "spam"), ("spam", "ham"), ("ham", "ham"), ("ham", "ham"), ("spam", "spam")]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    with served_at(tmp_path / "aivitals.db") as served:
        yield served


def test_the_groups_endpoint_answers_rates_scores_and_outcomes(served: Served) -> None:
    calls = [call_json(model="gpt-4o" if i % 2 else "gpt-4o-mini") for i in range(40)]
    ids = served.client.post("/api/v1/calls", json={"calls": calls}).json()["ids"]
    verdicts = demo_verdicts(ids)
    assert served.client.post("/api/v1/scores", json={"scores": verdicts}).status_code == 202
    outcomes = [
        {"call_id": call_id, "predicted": predicted, "actual": actual}
        for call_id, (predicted, actual) in zip(ids, LABELLED * 8, strict=True)
    ]
    assert served.client.post("/api/v1/outcomes", json={"outcomes": outcomes}).status_code == 202
    reply = served.client.get("/api/v1/quality/groups", params={"since": "24h", "by": "model"})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["by"] == ["model"] and body["outcomes_unavailable"] is None
    groups = {group["group"]["model"]: group for group in body["groups"]}
    for model, parity in (("gpt-4o", 1), ("gpt-4o-mini", 0)):
        mine = [i for i in range(40) if i % 2 == parity]
        refused = [
            v["value"]
            for v in verdicts
            if v["name"] == "refusal" and ids.index(v["call_id"]) in mine
        ]
        assert groups[model]["rates"]["refusal"] == {
            "rate": pytest.approx(np.mean(refused)),
            "count": 20,
        }
        pairs = [(LABELLED * 8)[i] for i in mine]
        task = groups[model]["outcomes"]["default"]
        assert task["accuracy"] == pytest.approx(
            metrics.accuracy_score([a for _, a in pairs], [p for p, _ in pairs])
        )
    assert served.client.get("/api/v1/quality/groups", params={"by": "colour"}).status_code == 422


def test_without_a_store_the_groups_endpoint_is_a_503() -> None:
    with serve_app(None) as served:
        assert served.client.get("/api/v1/quality/groups").status_code == 503


CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


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


EXPECTED: dict[str, tuple[int, float]] = {}
"""Per model, the outcomes posted and their accuracy by scikit-learn (filled by `origin`)."""


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    path = tmp_path_factory.mktemp("quality") / "aivitals.db"
    with demo_app(path, calls=CALLS) as app:
        client = TestClient(app)
        page = client.get("/api/v1/calls", params={"since": "24h", "limit": "5"}).json()
        ids = [item["call"]["id"] for item in page["calls"]]
        models = [item["call"]["model"] for item in page["calls"]]
        for model in set(models):
            pairs = [pair for pair, m in zip(LABELLED, models, strict=True) if m == model]
            truth, guess = [a for _, a in pairs], [p for p, _ in pairs]
            EXPECTED[model] = (len(pairs), metrics.accuracy_score(truth, guess))
        outcomes = [
            {"call_id": call_id, "predicted": predicted, "actual": actual}
            for call_id, (predicted, actual) in zip(ids, LABELLED, strict=True)
        ]
        assert client.post("/api/v1/outcomes", json={"outcomes": outcomes}).status_code == 202
        with serve_in_thread(app) as url:
            yield url


@pytest.fixture
def page(browser: Browser, origin: str) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    opened.set_default_timeout(30_000)
    try:
        yield opened
    finally:
        context.close()
    assert errors == [], errors


@pytest.mark.slow
def test_the_quality_row_shows_the_evaluator_rates_and_the_outcomes(
    page: Page, origin: str
) -> None:
    page.goto(origin + "/")
    page.wait_for_function("document.body && Number(document.body.dataset.loads) >= 1")
    assert page.locator("#status.error").count() == 0, page.inner_text("#status")
    # demo_verdicts: every 17th call refused, every 101st leaking, of the 1,200.
    refused = sum(1 for i in range(CALLS) if i % 17 == 0) / CALLS
    rates = page.get_by_test_id("kpi-quality-rates").inner_text()
    assert f"refusal rate\n{refused * 100:.2f}%" in rates
    leaks = sum(1 for i in range(CALLS) if i % 101 == 0)
    assert f"PII leaks\n{leaks}" in rates
    # The mean-score KPIs are the judge's only: a refusal rate is not a mean quality.
    means = page.get_by_test_id("kpi-quality").inner_text()
    assert "mean relevance" in means and "refusal" not in means
    drawn: list[int] = page.evaluate(
        "() => (document.getElementById('chart-quality-rates').data || []).map(t => t.y.length)"
    )
    assert drawn == [4, 4, 4]  # refusal, truncated and PII leak, for the demo's four models
    rows = page.locator("[data-testid=quality-outcomes] tbody tr").all_inner_texts()
    shown = {row.split("\t")[0]: row.split("\t")[1:4] for row in rows}
    assert shown == {
        model: ["default", str(n), f"{accuracy:.3f}"] for model, (n, accuracy) in EXPECTED.items()
    }
