"""Content capture: off by default, and when on, the prompt and answer of each call, redacted (the
detectors' findings and the user's patterns), in the store's ``contents`` table with a retention
of its own, read back by the read API's call detail. With the flag off the table stays empty and
no text leaves the process (the HTTP exporter's payload, the JSON log, the metrics have none).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import openai
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import aivitals
from aivitals.config import ConfigError
from aivitals.content import CallContent, ContentMessage, ToolCallContent
from aivitals.gateway.config import parse_gateway_config
from aivitals.mock_llm import MockConfig, MockServer
from aivitals.model import Call
from aivitals.query.content import content_of
from aivitals.runtime import build_runtime
from aivitals.sdk.runtime import reset
from aivitals.server import create_app
from aivitals.sinks.capture import ContentCapture
from aivitals.sinks.capture_config import CaptureConfig
from aivitals.store.schema import contents
from aivitals.store.sql import SqlStore

from .support.servers import serve_in_thread

PROMPT = "My card is 4111 1111 1111 1111 and my id is EMP-4821; what is my balance?"
CARD = "4111 1111 1111 1111"
SECRET = "sk-proj-Zq8wXe2rTy5uIo9pAs3dFg7hJk1lZx4cVb6nMq0wEr2tYu8iOp"


@pytest.fixture(scope="module")
def upstream() -> Iterator[MockServer]:
    with MockServer(MockConfig(time_scale=0)) as server:
        yield server


def ask(upstream: MockServer, answer: str = "email") -> str:
    client = aivitals.instrument(
        openai.OpenAI(base_url=upstream.base_url, api_key="sk-test", max_retries=0)
    )
    reply = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": PROMPT}],
        extra_headers={"X-Mock-Answer": answer},
    )
    client.close()
    return reply.choices[0].message.content or ""


def rows(store: SqlStore) -> list[sa.Row[tuple[object, ...]]]:
    with store.engine.connect() as connection:
        return list(connection.execute(sa.select(contents)))


def test_captured_content_is_redacted_and_read_back(upstream: MockServer, tmp_path: Path) -> None:
    runtime = aivitals.configure(
        store=tmp_path / "calls.db",
        endpoint=False,
        flush_interval_s=0.05,
        capture_content=CaptureConfig(enabled=True, redact_patterns=(r"EMP-\d{4}",)),
    )
    try:
        said = ask(upstream, "email")
        assert "jane.doe@northwind-mail.com" in said  # what the application got, untouched
        call_id = aivitals.last_call_id()
        assert runtime.recorder.flush(timeout_s=10)
    finally:
        reset()
    store = SqlStore.open(tmp_path / "calls.db")
    try:
        with store.engine.connect() as connection:
            stored = content_of(connection, call_id or "")
        assert stored is not None
        assert [(m.role, m.text) for m in stored.messages] == [
            ("user", "My card is [card] and my id is [redacted]; what is my balance?")
        ]
        assert stored.output_text == "You can reach our support team at [email] any time."
        assert stored.redactions == 3
        # The read API's call detail carries it.
        served = build_runtime(store=store, endpoint=False, registry=CollectorRegistry())
        app = create_app(runtime=served, store=store, registry=CollectorRegistry())
        body = TestClient(app).get(f"/api/v1/calls/{call_id}").json()
        assert body["content"]["output_text"] == stored.output_text
        assert body["content"]["messages"][0]["text"].startswith("My card is [card]")
        served.recorder.close()
    finally:
        store.close()


def test_flag_off_keeps_and_sends_no_text(upstream: MockServer, tmp_path: Path) -> None:
    received: list[bytes] = []
    lock = threading.Lock()

    async def take(request: Request) -> JSONResponse:
        body = await request.body()
        with lock:
            received.append(body)
        return JSONResponse({"accepted": 1})

    collector = Starlette(routes=[Route("/api/v1/{kind}", take, methods=["POST"])])
    log = tmp_path / "calls.jsonl"
    with serve_in_thread(collector) as origin:
        runtime = aivitals.configure(
            store=tmp_path / "calls.db",
            endpoint=origin,
            spool_dir=tmp_path / "spool",
            log_to=log,
            flush_interval_s=0.05,
        )
        try:
            said = ask(upstream, "card")
            assert CARD in said
            assert runtime.recorder.flush(timeout_s=10)
            assert runtime.prometheus is not None
            scraped = generate_latest(runtime.prometheus.registry).decode()
        finally:
            reset()
    sent = b"".join(received)
    assert b'"calls"' in sent  # the call went out, and scores with it
    for text in (CARD, "EMP-4821", "balance", "The card on file"):
        assert text.encode() not in sent
        assert text not in log.read_text()
        assert text not in scraped
    store = SqlStore.open(tmp_path / "calls.db")
    try:
        assert rows(store) == []
    finally:
        store.close()


def test_retention_deletes_old_content_only(store_target: str) -> None:
    store = SqlStore.open(store_target)
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    capture = ContentCapture(store, CaptureConfig(enabled=True, retention_days=7), now=lambda: now)
    content = CallContent(output_text="hello")
    for days in (10, 8, 6, 1):
        call = Call(
            provider="openai",
            model="gpt-4o-mini",
            latency_ms=1.0,
            started_at=now - timedelta(days=days),
        )
        capture.on_content(call, content)
    assert capture.captured == 4
    capture.tick()
    assert capture.deleted == 2
    kept = sorted(int(row.started_ms) for row in rows(store))
    assert kept == [int((now - timedelta(days=d)).timestamp() * 1000) for d in (6, 1)]
    capture.tick()  # not due again within the hour
    assert capture.deleted == 2
    store.close()


def test_tool_call_arguments_and_secrets_are_redacted(store_target: str) -> None:
    store = SqlStore.open(store_target)
    capture = ContentCapture(store, CaptureConfig(enabled=True))
    call = Call(provider="openai", model="gpt-4o-mini", latency_ms=1.0)
    capture.on_content(
        call,
        CallContent(
            messages=(ContentMessage(role="system", text=f"Key: {SECRET}"),),
            tool_calls=(
                ToolCallContent(name="pay", arguments='{"iban": "DE89370400440532013000"}'),
            ),
        ),
    )
    with store.engine.connect() as connection:
        stored = content_of(connection, call.id)
    store.close()
    assert stored is not None
    assert stored.messages[0].text == "Key: [secret]"
    assert stored.tool_calls[0].arguments == '{"iban": "[iban]"}'


def test_settings_errors_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"capture.redact_patterns\[0\]"):
        CaptureConfig(enabled=True, redact_patterns=("(",))
    with pytest.raises(ConfigError, match=r"capture\.retention_days must be above 0"):
        CaptureConfig(enabled=True, retention_days=0)
    with pytest.raises(ConfigError, match="capture_content needs a store"):
        build_runtime(store=False, endpoint=False, capture_content=True)
    parsed = parse_gateway_config(
        {"capture": {"enabled": True, "retention_days": 3, "redact_patterns": [r"EMP-\d+"]}}
    )
    assert parsed.capture.build() == CaptureConfig(
        enabled=True, retention_days=3, redact_patterns=(r"EMP-\d+",)
    )
    with pytest.raises(ConfigError, match=r"capture\.redact_patterns"):
        parse_gateway_config({"capture": {"redact_patterns": ["["]}})
    with pytest.raises(ConfigError, match=r"capture\.keep"):
        parse_gateway_config({"capture": {"keep": True}})
    # Off by default, in the file as in build_runtime.
    assert parse_gateway_config({}).capture.build().enabled is False
    runtime = build_runtime(store=tmp_path / "c.db", endpoint=False, registry=CollectorRegistry())
    assert "capture" not in runtime.recorder.quality.consumers
    runtime.recorder.close()


def test_a_failed_write_is_counted_and_logs_no_text(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = SqlStore.open(tmp_path / "calls.db")
    runtime = build_runtime(
        store=store, endpoint=False, registry=CollectorRegistry(), capture_content=True
    )
    with store.engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE contents")
    call = Call(provider="openai", model="gpt-4o-mini", latency_ms=1.0)
    runtime.recorder.record(call, CallContent(output_text=f"card {CARD}, {PROMPT}"))
    assert runtime.recorder.flush(timeout_s=10)
    assert runtime.recorder.stats.quality_errors["capture"] == 1
    runtime.recorder.close()
    store.close()
    assert "contents" in caplog.text  # the reason is said ...
    assert CARD not in caplog.text and "EMP-4821" not in caplog.text  # ... never the text
