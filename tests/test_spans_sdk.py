"""The SDK's spans: a real `TracerProvider` as the application's, spans read back in memory."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from opentelemetry import trace as otel
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import SpanKind, StatusCode

import aivitals
from aivitals.mock_llm import MockConfig, MockServer
from aivitals.sdk.spans import trace_headers

from .conftest import Recorded
from .support.otel import global_tracing


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    with global_tracing() as exporter:
        yield exporter


@pytest.fixture(scope="module")
def upstream() -> Iterator[MockServer]:
    with MockServer(MockConfig(seed=3)) as server:
        yield server


@pytest.fixture
def client(upstream: MockServer) -> Iterator[openai.OpenAI]:
    with aivitals.instrument(
        openai.OpenAI(base_url=upstream.base_url, api_key="sk-test", max_retries=0)
    ) as instrumented:
        yield instrumented


def hex_ids(span: ReadableSpan) -> tuple[str, str, str | None]:
    context = span.get_span_context()
    assert context is not None
    parent = span.parent
    return (
        f"{context.trace_id:032x}",
        f"{context.span_id:016x}",
        f"{parent.span_id:016x}" if parent is not None else None,
    )


def traceparent(header: str) -> tuple[str, str, bool]:
    """Trace id, parent id and the sampled flag of a W3C ``traceparent``."""
    version, trace_id, parent_id, flags = header.split("-")
    assert version == "00"
    return trace_id, parent_id, bool(int(flags, 16) & 1)


def only(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    found = [span for span in exporter.get_finished_spans() if span.name == name]
    assert len(found) == 1, [span.name for span in exporter.get_finished_spans()]
    return found[0]


def test_track_makes_a_client_span_with_the_genai_attributes_and_the_calls_ids(
    spans: InMemorySpanExporter, recorded: Recorded
) -> None:
    tracer = otel.get_tracer("the-app")
    with (
        tracer.start_as_current_span("handle request") as outer,
        aivitals.track(
            model="gpt-4o", provider="openai", user="u-7", feature="search", team="core"
        ) as call,
    ):
        call.set_usage(
            input_tokens=1200,
            output_tokens=300,
            cached_input_tokens=1000,
            cache_write_tokens=100,
            reasoning_tokens=200,
        )
        call.finish_reason = "stop"
    [stored] = recorded.calls()
    span = only(spans, "chat gpt-4o")
    assert span.kind is SpanKind.CLIENT
    attributes = dict(span.attributes or {})
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == "openai"
    assert attributes["gen_ai.request.model"] == "gpt-4o"
    assert attributes["gen_ai.usage.input_tokens"] == 1200
    assert attributes["gen_ai.usage.output_tokens"] == 300
    assert attributes["gen_ai.usage.cache_read.input_tokens"] == 1000
    assert attributes["gen_ai.usage.cache_creation.input_tokens"] == 100
    assert attributes["gen_ai.usage.reasoning.output_tokens"] == 200
    assert attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert attributes["aivitals.call.id"] == stored.id
    assert attributes["user.id"] == "u-7"
    assert attributes["aivitals.feature"] == "search"
    assert attributes["aivitals.team"] == "core"
    assert span.status.status_code is StatusCode.UNSET
    outer_context = outer.get_span_context()
    assert hex_ids(span) == (stored.trace_id, stored.span_id, stored.parent_span_id)
    assert stored.parent_span_id == f"{outer_context.span_id:016x}"


def test_the_call_span_is_current_inside_the_block_for_nested_spans_and_trace_headers(
    spans: InMemorySpanExporter, recorded: Recorded
) -> None:
    tracer = otel.get_tracer("the-app")
    with aivitals.track(
        model="text-embedding-3-small", provider="openai", operation="embeddings"
    ) as call:
        headers = trace_headers()
        with tracer.start_as_current_span("tokenise"):
            pass
        call.set_usage(input_tokens=8)
    [stored] = recorded.calls()
    span = only(spans, "embeddings text-embedding-3-small")
    child = only(spans, "tokenise")
    assert child.parent is not None and child.parent.span_id == span.context.span_id
    assert traceparent(headers["traceparent"]) == (stored.trace_id, stored.span_id, True)
    assert trace_headers() == {}  # the call is over


def test_a_response_read_by_track_names_its_id_and_the_server_its_address(
    spans: InMemorySpanExporter, recorded: Recorded, upstream: MockServer
) -> None:
    with openai.OpenAI(base_url=upstream.base_url, api_key="sk-test", max_retries=0) as plain:
        reply = track_a_reply(plain, upstream)
    attributes = dict(only(spans, "chat gpt-4o-mini").attributes or {})
    assert attributes["gen_ai.response.id"] == reply.id
    assert attributes["gen_ai.response.model"] == reply.model
    host, port = upstream.url.removeprefix("http://").rsplit(":", 1)
    assert (attributes["server.address"], attributes["server.port"]) == (host, int(port))


def track_a_reply(client: openai.OpenAI, upstream: MockServer) -> Any:
    with aivitals.track(model="gpt-4o-mini", provider="openai") as call:
        call.set_server(upstream.base_url)
        reply = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}]
        )
        call.set_response(reply)
    return reply


def test_a_failed_call_gives_an_error_span_with_its_error_type(
    spans: InMemorySpanExporter, recorded: Recorded
) -> None:
    with pytest.raises(TimeoutError), aivitals.track(model="gpt-4o", provider="openai"):
        raise TimeoutError("upstream took too long")
    [stored] = recorded.calls()
    span = only(spans, "chat gpt-4o")
    assert span.status.status_code is StatusCode.ERROR
    assert dict(span.attributes or {})["error.type"] == "timeout" == stored.error_type


def test_without_a_provider_there_is_no_span_and_the_call_has_no_trace(
    recorded: Recorded,
) -> None:
    assert isinstance(otel.get_tracer_provider(), otel.ProxyTracerProvider)
    with aivitals.track(model="gpt-4o", provider="openai") as call:
        assert trace_headers() == {}
        call.set_usage(input_tokens=10, output_tokens=2)
    [stored] = recorded.calls()
    assert (stored.trace_id, stored.span_id, stored.parent_span_id) == (None, None, None)


def test_an_unsampled_call_propagates_the_decision_and_records_no_ids(recorded: Recorded) -> None:
    with global_tracing(sampler=ALWAYS_OFF) as exporter:
        with aivitals.track(model="gpt-4o", provider="openai"):
            headers = trace_headers()
        assert exporter.get_finished_spans() == ()
    [stored] = recorded.calls()
    assert traceparent(headers["traceparent"])[2] is False
    assert stored.trace_id is None


def test_observe_as_the_call_is_a_chat_span_and_as_a_scope_holds_its_calls(
    spans: InMemorySpanExporter, recorded: Recorded
) -> None:
    @aivitals.observe(model="gpt-4o-mini", feature="summarise")
    def summarise() -> None:
        current = aivitals.current_call()
        assert current is not None
        current.set_usage(input_tokens=50, output_tokens=5)

    @aivitals.observe(feature="pipeline")
    def pipeline() -> None:
        with aivitals.track(model="gpt-4o", provider="openai") as inner:
            inner.set_usage(input_tokens=20, output_tokens=2)

    summarise()
    pipeline()
    alone, inner_call = recorded.calls()
    span = only(spans, "chat gpt-4o-mini")
    assert dict(span.attributes or {})["aivitals.call.id"] == alone.id
    scope = only(spans, pipeline.__qualname__)
    assert not any(key.startswith("gen_ai.") for key in dict(scope.attributes or {}))
    inner_span = only(spans, "chat gpt-4o")
    assert inner_span.parent is not None and inner_span.parent.span_id == scope.context.span_id
    assert inner_call.parent_span_id == f"{scope.context.span_id:016x}"


def test_instrument_sends_the_call_spans_traceparent_to_the_upstream(
    spans: InMemorySpanExporter, recorded: Recorded, upstream: MockServer
) -> None:
    current: list[otel.Span] = []  # the span current while the client sends the request

    def note(request: httpx.Request) -> None:
        current.append(otel.get_current_span())

    client = aivitals.instrument(
        openai.OpenAI(
            base_url=upstream.base_url,
            api_key="sk-test",
            max_retries=0,
            http_client=openai.DefaultHttpxClient(event_hooks={"request": [note]}),
        )
    )
    reply = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "hello"}],
        extra_headers={"X-Mock-Prompt-Tokens": "40", "X-Mock-Completion-Tokens": "4"},
    )
    [stored] = recorded.calls()
    span = only(spans, "chat gpt-4o-mini")
    attributes = dict(span.attributes or {})
    assert attributes["aivitals.call.id"] == stored.id
    assert attributes["gen_ai.usage.input_tokens"] == 40
    assert attributes["gen_ai.response.id"] == reply.id
    host, port = upstream.url.removeprefix("http://").rsplit(":", 1)
    assert (attributes["server.address"], attributes["server.port"]) == (host, int(port))
    [during] = current
    assert during.get_span_context().span_id == span.context.span_id
    client.close()
    request = upstream.requests()[-1]
    sent = dict(request["headers"])
    assert traceparent(sent["traceparent"]) == (stored.trace_id, stored.span_id, True)


def test_instrument_keeps_a_callers_own_traceparent(
    spans: InMemorySpanExporter, recorded: Recorded, client: openai.OpenAI, upstream: MockServer
) -> None:
    theirs = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "hello"}],
        extra_headers={"traceparent": theirs},
    )
    request = upstream.requests()[-1]
    assert dict(request["headers"])["traceparent"] == theirs


def test_a_streams_span_ends_when_the_stream_does(
    spans: InMemorySpanExporter, recorded: Recorded, client: openai.OpenAI
) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "hello"}],
        stream=True,
        extra_headers={"X-Mock-Prompt-Tokens": "30", "X-Mock-Completion-Tokens": "6"},
    )
    assert spans.get_finished_spans() == ()
    assert trace_headers() != {}  # the stream's call is still open
    for _ in stream:
        pass
    [stored] = recorded.calls()
    span = only(spans, "chat gpt-4o-mini")
    attributes = dict(span.attributes or {})
    assert attributes["gen_ai.usage.output_tokens"] == 6 == stored.output_tokens
    assert stored.ttft_ms is not None
    assert attributes["gen_ai.response.time_to_first_chunk"] == pytest.approx(
        stored.ttft_ms / 1000.0
    )
    assert hex_ids(span)[:2] == (stored.trace_id, stored.span_id)


def test_an_upstream_error_through_instrument_is_an_error_span(
    spans: InMemorySpanExporter, recorded: Recorded, client: openai.OpenAI
) -> None:
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "hello"}],
            extra_headers={"X-Mock-Error": "rate_limit"},
        )
    [stored] = recorded.calls()
    span = only(spans, "chat gpt-4o-mini")
    assert span.status.status_code is StatusCode.ERROR
    assert dict(span.attributes or {})["error.type"] == "rate_limit" == stored.error_type
