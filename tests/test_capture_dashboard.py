"""The dashboard's call detail shows captured content in a real browser (headless Chromium):
the prompt and the answer as plain text (markup in them is shown, never run), and says so when a
call's content was not captured.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from prometheus_client import CollectorRegistry

from aivitals.content import CallContent, ContentMessage
from aivitals.model import Call
from aivitals.runtime import build_runtime
from aivitals.server import create_app
from aivitals.sinks.capture import ContentCapture
from aivitals.sinks.capture_config import CaptureConfig
from aivitals.store.sql import SqlStore

from .support.realservers import need
from .support.servers import serve_in_thread

pytestmark = pytest.mark.slow

FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
MARKUP = '<img src=x onerror="document.body.dataset.owned=1">'


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = need("chromium")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, headless=True, args=FLAGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def calls(tmp_path: Path) -> Iterator[tuple[str, Call, Call]]:
    store = SqlStore.open(tmp_path / "calls.db")
    captured = Call(provider="openai", model="gpt-4o-mini", latency_ms=420.0, input_tokens=9)
    plain = Call(provider="openai", model="gpt-4o", latency_ms=300.0, input_tokens=5)
    store.write([captured, plain], [])
    ContentCapture(store, CaptureConfig(enabled=True)).on_content(
        captured,
        CallContent(
            messages=(ContentMessage(role="user", text=f"Mail me at ann@acme-mail.io {MARKUP}"),),
            output_text="Sure, noted.",
        ),
    )
    runtime = build_runtime(store=store, endpoint=False, registry=CollectorRegistry())
    app = create_app(runtime=runtime, store=store, registry=CollectorRegistry())
    with serve_in_thread(app) as origin:
        yield origin, captured, plain
    runtime.recorder.close()
    store.close()


def open_call(page: Page, origin: str, call_id: str) -> str:
    page.goto(origin + "/")
    page.wait_for_function("document.body && Number(document.body.dataset.loads) >= 1")
    page.locator(f"[data-testid=calls] tr[data-call-id='{call_id}']").click()
    page.wait_for_function(f"document.body.dataset.call === {call_id!r}")
    return page.get_by_test_id("call-content").inner_text()


def test_call_detail_shows_captured_content_as_text(
    browser: Browser, calls: tuple[str, Call, Call]
) -> None:
    origin, captured, plain = calls
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        shown = open_call(page, origin, captured.id)
        assert "Mail me at [email] " + MARKUP in shown  # redacted, and the markup is text
        assert "Sure, noted." in shown and "1 redacted" in shown
        assert page.evaluate("document.body.dataset.owned") is None
        assert page.locator("[data-testid=call-content] img").count() == 0
        page.keyboard.press("Escape")
        assert "not captured" in open_call(page, origin, plain.id)
    finally:
        context.close()
    assert errors == [], errors
