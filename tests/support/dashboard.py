"""A demo-like store for the dashboard tests: `aivitals.demo`'s planned workload, posted as calls.

No test here; the dashboard test modules import from it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from aivitals.demo.workload import plan_workload
from aivitals.server import create_app
from aivitals.store.sql import SqlStore
from tests.support.server_app import NOW, build_runtime

# What the fake upstream's injected errors become once classified.
_ERRORS = {
    "rate_limit": ("rate_limit", 429),
    "server_error": ("provider_down", 503),
    "timeout": ("timeout", None),
    "context_length": ("context_window_exceeded", 400),
}
_PEAK = 0.25


def demo_calls(n: int, *, seed: int = 7) -> tuple[list[dict[str, Any]], list[float | None]]:
    """``n`` calls of the demo's workload spread over the 24 hours before `NOW`, and the
    relevance score planned for each (None: unscored)."""
    bodies: list[dict[str, Any]] = []
    scores: list[float | None] = []
    for item in plan_workload(n, seed=seed):
        # Busiest 6 hours into the window, quietest 18: a day of traffic, not a flat line.
        # The shift is 0 at both ends, so every call stays inside the 24 hours.
        share = (item.index + 0.5) / n
        phase = 2 * math.pi * _PEAK
        share -= 0.6 * (math.sin(2 * math.pi * share - phase) + math.sin(phase)) / (2 * math.pi)
        started = NOW - timedelta(hours=24) + timedelta(seconds=86_400 * share)
        self_hosted = item.model == "acme-internal-7b"
        # UUIDv7-shaped ids from the start time: the same on every run (so are the screenshots).
        stamp = f"{int(started.timestamp() * 1000):012x}"
        body: dict[str, Any] = {
            "id": f"{stamp[:8]}-{stamp[8:]}-7{item.index % 4096:03x}-8000-{item.index:012x}",
            "provider": "acme" if self_hosted else "openai",
            "model": item.model,
            "latency_ms": round(item.latency_ms, 1),
            "ttft_ms": round(item.ttft_ms, 1) if item.stream else None,
            "input_tokens": item.prompt_tokens,
            "cached_input_tokens": item.cached_tokens,
            "output_tokens": item.completion_tokens,
            "reasoning_tokens": item.reasoning_tokens,
            "feature": item.feature,
            "team": item.team,
            "user": item.user,
            "environment": "staging" if item.index % 5 == 0 else "prod",
            "started_at": started.isoformat(),
            # Calls go in pairs, one trace each, the second a child of the first: the
            # drill-down then has a trace of two stages to show.
            "trace_id": f"{item.index // 2:032x}",
            "span_id": f"{item.index + 1:016x}",
            "parent_span_id": f"{item.index:016x}" if item.index % 2 else None,
        }
        if item.error is not None:
            error_type, http_status = _ERRORS[item.error]
            body.update(
                status="error", error_type=error_type, http_status=http_status, output_tokens=0
            )
            body["reasoning_tokens"] = 0
        bodies.append({k: v for k, v in body.items() if v is not None})
        scores.append(item.score)
    return bodies, scores


def demo_verdicts(ids: list[str]) -> list[dict[str, Any]]:
    """The built-in evaluators' verdicts on the demo's calls: every 17th refused, every 29th
    cut, every 101st leaking; created after the relevance scores, so those stay first."""
    later = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    found = {"refusal": 17, "truncated": 29, "pii_leak": 101}
    return [
        {
            "call_id": call_id,
            "name": name,
            "value": float(index % every == 0),
            "source": "evaluator",
            "created_at": later,
        }
        for index, call_id in enumerate(ids)
        for name, every in found.items()
    ]


@contextmanager
def demo_app(path: Path, *, calls: int = 600, **options: Any) -> Iterator[FastAPI]:
    """An app over a SQLite store at ``path`` holding ``calls`` demo calls and their scores,
    its clock at `NOW`; the store is complete when it is yielded."""
    store = SqlStore.open(path)
    runtime = build_runtime(store)
    app = create_app(
        runtime=runtime, store=store, registry=CollectorRegistry(), now=lambda: NOW, **options
    )
    # Ingest stays open whatever the dashboard token: no header needed here.
    client = TestClient(app)
    try:
        bodies, planned = demo_calls(calls)
        ids: list[str] = []
        for first in range(0, len(bodies), 1000):
            reply = client.post("/api/v1/calls", json={"calls": bodies[first : first + 1000]})
            assert reply.status_code == 202, reply.text
            ids.extend(reply.json()["ids"])
        scores = [
            {"call_id": call_id, "name": "relevance", "value": value, "source": "judge"}
            for call_id, value in zip(ids, planned, strict=True)
            if value is not None
        ]
        reply = client.post("/api/v1/scores", json={"scores": scores})
        assert reply.status_code == 202, reply.text
        verdicts = demo_verdicts(ids)
        for first in range(0, len(verdicts), 1000):
            reply = client.post("/api/v1/scores", json={"scores": verdicts[first : first + 1000]})
            assert reply.status_code == 202, reply.text
        assert runtime.recorder.flush(timeout_s=30)
        yield app
    finally:
        runtime.recorder.close()
        store.close()


@contextmanager
def served_store(store: SqlStore) -> Iterator[tuple[str, TestClient]]:
    """``store`` behind a real server in a thread at the tests' fixed clock: its URL and a client;
    the runtime and the store are closed after."""
    from tests.support.servers import serve_in_thread  # starts uvicorn

    runtime = build_runtime(store)
    app = create_app(runtime=runtime, store=store, registry=CollectorRegistry(), now=lambda: NOW)
    try:
        with serve_in_thread(app) as url:
            yield url, TestClient(app)
    finally:
        runtime.recorder.close()
        store.close()


@contextmanager
def chromium_page(flags: list[str], timeout_ms: int) -> Iterator[Any]:
    """A headless Chromium page at 1440x900; the block fails if a script on it raised."""
    from playwright.sync_api import sync_playwright  # only the browser tests

    from tests.support.realservers import need

    chromium = need("chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=flags)
        opened = browser.new_context(viewport={"width": 1440, "height": 900}).new_page()
        errors: list[str] = []
        opened.on("pageerror", lambda error: errors.append(str(error)))
        opened.set_default_timeout(timeout_ms)
        try:
            yield opened
        finally:
            browser.close()
        assert errors == [], errors
