"""The gateway's spans: what the store has about each call, on the request and upstream spans,
and the standard ``OTEL_*`` configuration of the provider that exports them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import anthropic
import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from typer.testing import CliRunner

from aivitals.cli import app as cli
from aivitals.config import ConfigError
from aivitals.gateway.proxy import Gateway
from aivitals.gateway.tracing import tracer_for, tracer_provider
from aivitals.gateway.upstreams import Upstream, Upstreams
from aivitals.mock_llm import MockConfig, MockServer
from aivitals.model import Call
from aivitals.recorder import Recorder
from aivitals.sinks.memory import MemorySink

from .support.servers import serve_in_thread

MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello there"}]


class Rig:
    def __init__(
        self, origin: str, memory: MemorySink, recorder: Recorder, spans: InMemorySpanExporter
    ) -> None:
        self.origin = origin
        self.memory = memory
        self.recorder = recorder
        self.spans = spans
        self.client = openai.OpenAI(base_url=f"{origin}/v1", api_key="sk-client", max_retries=0)

    def calls(self, expected: int) -> list[Call]:
        # A stream is recorded just after its last byte reaches the client: wait (bounded).
        deadline = time.monotonic() + 5
        while True:
            assert self.recorder.flush()
            if len(self.memory.calls) >= expected or time.monotonic() > deadline:
                return list(self.memory.calls)
            time.sleep(0.02)

    def span(self, name: str) -> ReadableSpan:
        found = [span for span in self.spans.get_finished_spans() if span.name == name]
        assert len(found) == 1, [span.name for span in self.spans.get_finished_spans()]
        return found[0]


@pytest.fixture(scope="module")
def upstream() -> Iterator[MockServer]:
    with MockServer(MockConfig(seed=5, latency_median_ms=5, ttft_median_ms=1)) as server:
        yield server


def gateway_app(gateway: Gateway) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gateway.start()
        yield
        await gateway.stop()

    return Starlette(routes=gateway.routes, lifespan=lifespan)


@contextmanager
def serve_gateway(base_url: str, *more: Upstream) -> Iterator[Rig]:
    memory = MemorySink()
    recorder = Recorder(batch_sinks=[memory], flush_interval_s=0.05)
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    gateway = Gateway(
        recorder=recorder,
        upstreams=Upstreams([*more, Upstream(name="mock", base_url=base_url, timeout_s=2.0)]),
        tracer=tracer_for(provider),
    )
    with serve_in_thread(gateway_app(gateway)) as origin:
        rig = Rig(origin, memory, recorder, spans)
        yield rig
        rig.client.close()
    recorder.close()


@pytest.fixture
def rig(upstream: MockServer) -> Iterator[Rig]:
    with serve_gateway(upstream.base_url) as served:
        yield served


def attributes_of(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def test_the_request_span_carries_what_the_store_has(rig: Rig, upstream: MockServer) -> None:
    reply = rig.client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        max_tokens=300,
        temperature=0.2,
        user="u-42",
        extra_headers={
            "X-Aivitals-Feature": "search",
            "X-Aivitals-Team": "core",
            "X-Mock-Prompt-Tokens": "2000",
            "X-Mock-Cached-Tokens": "1000",
            "X-Mock-Cache-Write-Tokens": "500",
            "X-Mock-Completion-Tokens": "120",
            "X-Mock-Reasoning-Tokens": "80",
        },
    )
    [call] = rig.calls(1)
    root = rig.span("chat gpt-4o-mini")
    assert root.kind is SpanKind.SERVER
    got = attributes_of(root)
    assert got["aivitals.call.id"] == call.id
    assert got["gen_ai.usage.input_tokens"] == 2000 == call.input_tokens
    assert got["gen_ai.usage.cache_read.input_tokens"] == 1000
    assert got["gen_ai.usage.cache_creation.input_tokens"] == 500 == call.cache_write_tokens
    assert got["gen_ai.usage.reasoning.output_tokens"] == 80 == call.reasoning_tokens
    assert got["gen_ai.response.id"] == reply.id
    assert got["gen_ai.request.stream"] is False
    assert got["gen_ai.request.max_tokens"] == 300
    assert got["gen_ai.request.temperature"] == 0.2
    assert got["user.id"] == "u-42"
    assert got["aivitals.feature"] == "search"
    assert got["aivitals.team"] == "core"
    assert got["http.request.method"] == "POST"
    assert got["url.path"] == "/v1/chat/completions"
    assert got["http.response.status_code"] == 200
    assert "gen_ai.response.time_to_first_chunk" not in got  # a whole answer has no chunks

    host, port = upstream.url.removeprefix("http://").rsplit(":", 1)
    sent = attributes_of(rig.span("upstream"))
    assert (sent["server.address"], sent["server.port"]) == (host, int(port))
    assert sent["aivitals.upstream"] == "mock"
    assert rig.span("upstream").status.status_code is StatusCode.UNSET


def test_a_streams_request_span_has_its_time_to_first_chunk_and_response_id(rig: Rig) -> None:
    stream = rig.client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        stream=True,
        extra_headers={"X-Mock-TTFT-Ms": "30", "X-Mock-Latency-Ms": "60"},
    )
    ids = {chunk.id for chunk in stream}
    [call] = rig.calls(1)
    got = attributes_of(rig.span("chat gpt-4o-mini"))
    assert got["gen_ai.request.stream"] is True
    assert call.ttft_ms is not None and call.ttft_ms >= 30
    assert got["gen_ai.response.time_to_first_chunk"] == pytest.approx(call.ttft_ms / 1000)
    assert {got["gen_ai.response.id"]} == ids
    assert got["http.response.status_code"] == 200


def test_an_upstream_error_status_fails_the_upstream_span(rig: Rig) -> None:
    with pytest.raises(openai.RateLimitError):
        rig.client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, extra_headers={"X-Mock-Error": "rate_limit"}
        )
    [call] = rig.calls(1)
    sent = rig.span("upstream")
    assert sent.status.status_code is StatusCode.ERROR
    assert attributes_of(sent)["error.type"] == "429"
    root = rig.span("chat gpt-4o-mini")
    assert attributes_of(root)["http.response.status_code"] == 429
    assert attributes_of(root)["error.type"] == "rate_limit" == call.error_type
    assert root.status.status_code is StatusCode.ERROR


def test_an_unreachable_upstream_fails_both_spans_with_the_gateways_status() -> None:
    with serve_gateway("http://127.0.0.1:9/v1") as rig:
        with pytest.raises(openai.InternalServerError):
            rig.client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        sent = rig.span("upstream")
        assert sent.status.status_code is StatusCode.ERROR
        assert attributes_of(sent)["error.type"] == "provider_down"
        assert attributes_of(sent)["server.port"] == 9
        root = rig.span("chat gpt-4o-mini")
        assert attributes_of(root)["http.response.status_code"] == 502
        assert root.status.status_code is StatusCode.ERROR


def test_the_native_routes_spans_carry_their_requests_and_responses(
    upstream: MockServer,
) -> None:
    claude = Upstream(
        name="claude",
        base_url=upstream.base_url,
        models=("claude-sonnet-4-6",),
        api="anthropic",
        provider="anthropic",
    )
    with serve_gateway(upstream.base_url, claude) as rig:
        with anthropic.Anthropic(base_url=rig.origin, api_key="sk-ant", max_retries=0) as client:
            message = client.messages.create(
                model="claude-sonnet-4-6",
                max_tokens=333,
                extra_body={"temperature": 0.5},  # this client version has no keyword for it
                messages=[{"role": "user", "content": "hello"}],
            )
        streamed = list(
            rig.client.responses.create(
                model="gpt-4o-mini", input="hello", max_output_tokens=444, stream=True
            )
        )
        claude_call, gpt_call = sorted(rig.calls(2), key=lambda call: call.provider)
        spoken = attributes_of(rig.span("chat claude-sonnet-4-6"))
        assert spoken["gen_ai.provider.name"] == "anthropic"
        assert spoken["gen_ai.request.max_tokens"] == 333
        assert spoken["gen_ai.request.temperature"] == 0.5
        assert spoken["gen_ai.response.id"] == message.id
        assert spoken["aivitals.call.id"] == claude_call.id
        assert spoken["url.path"] == "/v1/messages"
        written = attributes_of(rig.span("chat gpt-4o-mini"))
        assert written["gen_ai.request.max_tokens"] == 444
        assert written["gen_ai.request.stream"] is True
        assert written["gen_ai.response.id"] == streamed[-1].response.id  # type: ignore[union-attr]
        assert written["aivitals.call.id"] == gpt_call.id
        assert written["url.path"] == "/v1/responses"


def test_otel_service_name_wins_over_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    assert tracer_provider().resource.attributes["service.name"] == "aivitals-gateway"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "llm-edge")
    monkeypatch.setenv(
        "OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=prod,service.namespace=ai"
    )
    resource = tracer_provider().resource.attributes
    assert resource["service.name"] == "llm-edge"
    assert resource["deployment.environment.name"] == "prod"
    assert resource["service.namespace"] == "ai"
    monkeypatch.delenv("OTEL_SERVICE_NAME")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attributes")
    assert tracer_provider().resource.attributes["service.name"] == "from-attributes"


def test_otel_traces_sampler_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.25")
    assert tracer_provider().sampler.get_description() == "TraceIdRatioBased{0.25}"
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    tracer = tracer_for(tracer_provider())
    assert not tracer.start_span("x").is_recording()


@pytest.mark.parametrize(
    "variable", ["OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"]
)
@pytest.mark.parametrize("protocol", ["grpc", "http/json"])
def test_an_export_protocol_we_cannot_speak_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, protocol: str
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
    monkeypatch.setenv(variable, protocol)
    with pytest.raises(ConfigError, match=variable):
        tracer_provider()


def test_serve_refuses_grpc_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    result = CliRunner().invoke(
        cli, ["serve", "--port", "0", "--no-db", "--upstream", "http://127.0.0.1:9/v1"]
    )
    assert result.exit_code == 2
    assert "OTEL_EXPORTER_OTLP_PROTOCOL='grpc'" in " ".join(result.output.split())


def test_spans_reach_an_otlp_http_endpoint_under_the_configured_service_name(
    monkeypatch: pytest.MonkeyPatch, upstream: MockServer
) -> None:
    received: list[ExportTraceServiceRequest] = []

    async def traces(request: Request) -> Response:
        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.body())
        received.append(message)
        return Response(b"", media_type="application/x-protobuf")

    with serve_in_thread(Starlette(routes=[Route("/v1/traces", traces, methods=["POST"])])) as url:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", url)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        monkeypatch.setenv("OTEL_SERVICE_NAME", "llm-edge")
        provider = tracer_provider()
        memory = MemorySink()
        recorder = Recorder(batch_sinks=[memory], flush_interval_s=0.05)
        gateway = Gateway(
            recorder=recorder,
            upstreams=Upstreams([Upstream(name="mock", base_url=upstream.base_url)]),
            tracer=tracer_for(provider),
        )
        with serve_in_thread(gateway_app(gateway)) as origin:
            client = openai.OpenAI(base_url=f"{origin}/v1", api_key="sk-client", max_retries=0)
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
            client.close()
        assert recorder.flush()
        [call] = memory.calls
        assert provider.force_flush(10_000)
        provider.shutdown()
        recorder.close()
    resources = [resource for message in received for resource in message.resource_spans]
    names = {
        attribute.value.string_value
        for resource in resources
        for attribute in resource.resource.attributes
        if attribute.key == "service.name"
    }
    assert names == {"llm-edge"}
    roots = [
        span
        for resource in resources
        for scope in resource.scope_spans
        for span in scope.spans
        if span.name == "chat gpt-4o-mini"
    ]
    assert [span.trace_id.hex() for span in roots] == [call.trace_id]


async def test_the_request_span_ends_when_handling_fails_unexpectedly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bug is the server's error (500); a cancelled task is a client gone (499), not one."""
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    recorder = Recorder(batch_sinks=[MemorySink()])
    gateway = Gateway(
        recorder=recorder,
        upstreams=Upstreams([Upstream(name="mock", base_url="http://127.0.0.1:9/v1")]),
        tracer=tracer_for(provider),
    )

    async def broken(*args: Any, **kwargs: Any) -> Response:
        raise RuntimeError("a bug in a stage")

    monkeypatch.setattr(gateway, "_handle", broken)
    transport = httpx.ASGITransport(app=gateway_app(gateway), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        answer = await client.post("/v1/chat/completions", json={"model": "gpt-4o"})
    assert answer.status_code == 500
    [root] = spans.get_finished_spans()
    assert attributes_of(root)["http.response.status_code"] == 500
    assert root.status.status_code is StatusCode.ERROR

    async def cancelled(*args: Any, **kwargs: Any) -> Response:
        raise asyncio.CancelledError

    monkeypatch.setattr(gateway, "_handle", cancelled)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        with pytest.raises(asyncio.CancelledError):
            await client.post("/v1/chat/completions", json={"model": "gpt-4o"})
    gone = spans.get_finished_spans()[-1]
    assert attributes_of(gone)["http.response.status_code"] == 499
    assert gone.status.status_code is StatusCode.UNSET
    recorder.close()
