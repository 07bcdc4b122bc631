"""A round trip: the SDK's calls reach a real `aivitals serve` twice, as records through its HTTP
exporter and as spans through the real `OTLPSpanExporter`, and are stored once each."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from opentelemetry import trace as otel
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

import aivitals
from aivitals.mock_llm import MockConfig, MockServer
from aivitals.sdk.runtime import reset

from .support.gateway_processes import ServeProcess
from .support.otel import reset_tracing
from .support.realservers import poll


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[ServeProcess]:
    (tmp_path / "serve").mkdir()
    with ServeProcess(tmp_path / "serve") as process:
        yield process


def stored(serve: ServeProcess, expected: int) -> list[dict[str, Any]]:
    """The stored calls, once the store holds ``expected`` of them (bounded wait)."""

    def enough() -> list[dict[str, Any]] | None:
        reply = serve.client.get(serve.url + "/api/v1/calls", params={"limit": 1000})
        reply.raise_for_status()
        calls = [item["call"] for item in reply.json()["calls"]]
        return calls if len(calls) >= expected else None

    found: list[dict[str, Any]] = poll(f"{expected} calls in the store", enough)
    return found


def test_calls_recorded_and_exported_as_spans_are_stored_once(
    serve: ServeProcess, tmp_path: Path
) -> None:
    provider = TracerProvider()
    provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=serve.url + "/v1/traces"))
    )
    reset_tracing()
    otel.set_tracer_provider(provider)
    aivitals.configure(endpoint=serve.url, store=False, spool_dir=tmp_path / "spool")
    try:
        with MockServer(MockConfig(seed=9, latency_median_ms=5, ttft_median_ms=1)) as upstream:
            client = aivitals.instrument(
                openai.OpenAI(base_url=upstream.base_url, api_key="sk-test", max_retries=0)
            )
            client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "hello"}],
                extra_headers={
                    "X-Mock-Prompt-Tokens": "1200",
                    "X-Mock-Cached-Tokens": "1024",
                    "X-Mock-Completion-Tokens": "80",
                },
            )
            for _ in client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "hello"}],
                stream=True,
                extra_headers={"X-Mock-Prompt-Tokens": "300", "X-Mock-Completion-Tokens": "7"},
            ):
                pass
            client.close()
        with aivitals.track(model="gpt-4o", provider="openai", feature="search") as call:
            call.set_usage(input_tokens=2000, output_tokens=300)
        assert aivitals.flush(timeout_s=30)
        assert provider.force_flush(10_000)
        tracked_call = call.recorded
        assert tracked_call is not None
    finally:
        provider.shutdown()
        reset_tracing()
        reset()

    calls = stored(serve, 3)
    assert len(calls) == 3, [c["id"] for c in calls]
    # Both paths delivered: the receiver took the three spans as model calls.
    metrics = serve.client.get(serve.url + "/metrics").text
    assert 'aivitals_otlp_items_total{outcome="recorded",signal="traces"} 3.0' in metrics
    by_tokens = sorted((c["input_tokens"], c["output_tokens"]) for c in calls)
    assert by_tokens == [(300, 7), (1200, 80), (2000, 300)]
    tracked = next(c for c in calls if c["input_tokens"] == 2000)
    assert tracked["id"] == tracked_call.id
    assert tracked["feature"] == "search"
    assert tracked["trace_id"] == tracked_call.trace_id
    cached = next(c for c in calls if c["input_tokens"] == 1200)
    assert cached["cached_input_tokens"] == 1024
    assert all(c["span_id"] for c in calls)


def test_the_gateways_spans_exported_to_another_serve_are_its_calls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "a").mkdir()
    with (
        MockServer(MockConfig(seed=10, latency_median_ms=5, ttft_median_ms=1)) as upstream,
        ServeProcess(tmp_path / "b") as receiver,
    ):
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")  # ms: export soon after the call
        with ServeProcess(tmp_path / "a", "--upstream", upstream.base_url) as gateway:
            client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="sk-x", max_retries=0)
            client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "hello"}],
                extra_headers={
                    "X-Aivitals-Feature": "search",
                    "X-Mock-Prompt-Tokens": "1500",
                    "X-Mock-Cached-Tokens": "1000",
                    "X-Mock-Cache-Write-Tokens": "200",
                    "X-Mock-Completion-Tokens": "90",
                    "X-Mock-Reasoning-Tokens": "40",
                },
            )
            client.close()
            [original] = stored(gateway, 1)
            [echoed] = stored(receiver, 1)
    for field in (
        "id",
        "trace_id",
        "span_id",
        "input_tokens",
        "cached_input_tokens",
        "cache_write_tokens",
        "output_tokens",
        "reasoning_tokens",
        "feature",
        "cost_usd",
    ):
        assert echoed[field] == original[field], field
    assert (echoed["input_tokens"], echoed["reasoning_tokens"]) == (1500, 40)
