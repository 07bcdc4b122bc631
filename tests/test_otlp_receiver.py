"""The OTLP/HTTP receiver on a real ``aivitals serve``, fed by OpenTelemetry's own exporter.

What the specification (opentelemetry-proto ``docs/specification.md``, OTLP/HTTP) asks of a
server, on the wire: protobuf and JSON (hex ids), gzip, the body limit (413, a gzip bomb too),
a ``google.rpc.Status`` for undecodable bodies (400), 415 for other content types, partial
success, and each export's model calls stored once and counted once however often it is sent.
"""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import pytest
from google.rpc import status_pb2
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from aivitals.cli import app

from .support.gateway_processes import ServeProcess, Wire

pytestmark = pytest.mark.slow

PROTOBUF = {"content-type": "application/x-protobuf"}
JSON = {"content-type": "application/json"}
LIMIT = 20 * 1024 * 1024  # the specification's recommended 20 MiB


def model_attributes(**overrides: Any) -> dict[str, Any]:
    """A chat call as GenAI semantic conventions describe it."""
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
        "gen_ai.usage.input_tokens": 1200,
        "gen_ai.usage.output_tokens": 80,
    }
    attributes.update(overrides)
    return attributes


def finished_spans(*attribute_sets: dict[str, Any], plain: int = 0) -> Sequence[ReadableSpan]:
    """Spans made by the real SDK: one CLIENT span per attribute set, and ``plain`` HTTP spans."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "otlp-test"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("tests.otlp")
    with tracer.start_as_current_span("POST /ask", kind=SpanKind.SERVER):
        for attributes in attribute_sets:
            name = f"chat {attributes.get('gen_ai.request.model', '')}"
            with tracer.start_as_current_span(name, kind=SpanKind.CLIENT, attributes=attributes):
                pass
        for index in range(plain):
            with tracer.start_as_current_span(
                f"GET /search/{index}", kind=SpanKind.CLIENT, attributes={"http.method": "GET"}
            ):
                pass
    provider.shutdown()
    return memory.get_finished_spans()


def export(spans: Sequence[ReadableSpan], **options: Any) -> SpanExportResult:
    """One export by a fresh `OTLPSpanExporter` with ``options``, as an application makes it."""
    exporter = OTLPSpanExporter(**options)
    try:
        return exporter.export(spans)
    finally:
        exporter.shutdown()  # type: ignore[no-untyped-call]  # untyped in the exporter


def stored_calls(serve: ServeProcess) -> list[dict[str, Any]]:
    reply = serve.client.get(serve.url + "/api/v1/calls", params={"limit": 1000, "since": "30d"})
    reply.raise_for_status()
    return [item["call"] for item in reply.json()["calls"]]


def scraped(serve: ServeProcess, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples on ``/metrics`` whose labels include ``labels``."""
    text = serve.client.get(serve.url + "/metrics").text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def hex_ids(span: ReadableSpan) -> tuple[str, str]:
    context = span.get_span_context()
    assert context is not None
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


def status_of(reply: httpx.Response) -> status_pb2.Status:
    """The ``google.rpc.Status`` a failure carries, in the encoding it was answered in."""
    if reply.headers["content-type"] == "application/json":
        document = reply.json()
        return status_pb2.Status(code=document.get("code", 0), message=document["message"])
    return status_pb2.Status.FromString(reply.content)


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    with ServeProcess(tmp_path_factory.mktemp("serve")) as process:
        yield process


def test_the_exporter_delivers_model_spans_and_they_are_stored_with_their_ids(
    serve: ServeProcess,
) -> None:
    spans = finished_spans(model_attributes(**{"gen_ai.request.model": "gpt-4o"}), plain=2)
    assert export(spans, endpoint=serve.url + "/v1/traces") == SpanExportResult.SUCCESS
    model_span = next(span for span in spans if span.name == "chat gpt-4o")
    trace_id, span_id = hex_ids(model_span)
    (call,) = [call for call in stored_calls(serve) if call["trace_id"] == trace_id]
    assert call["span_id"] == span_id
    assert (call["model"], call["input_tokens"], call["output_tokens"]) == ("gpt-4o", 1200, 80)
    # Priced by aivitals: gpt-4o at $2.50 in / $10 out per million tokens.
    assert call["cost_usd"] == pytest.approx(1200 * 2.5e-6 + 80 * 10e-6)


@pytest.mark.parametrize("compression", [Compression.Gzip, Compression.Deflate])
def test_a_compressed_export_is_stored(serve: ServeProcess, compression: Compression) -> None:
    model = f"gpt-4o-mini-{compression.value}-test"
    spans = finished_spans(model_attributes(**{"gen_ai.request.model": model}))
    result = export(spans, endpoint=serve.url + "/v1/traces", compression=compression)
    assert result == SpanExportResult.SUCCESS
    assert [call["model"] for call in stored_calls(serve) if call["model"] == model] == [model]


def test_json_with_hex_ids_is_answered_in_json_and_stored(serve: ServeProcess) -> None:
    now_ns = time.time_ns()
    trace_id, span_id, parent = (
        "5B8EFFF798038103D269B633813FC60C",
        "EEE19B7EC3C1B174",
        "EEE19B7EC3C1B173",
    )
    attributes = [
        {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
        {"key": "gen_ai.provider.name", "value": {"stringValue": "openai"}},
        {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o-mini-json-test"}},
        # int64 as a JSON string, as the protobuf JSON mapping writes it.
        {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "321"}},
        {"key": "gen_ai.usage.output_tokens", "value": {"intValue": 12}},
    ]
    body = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "j"}}]
                },
                "scopeSpans": [
                    {
                        "scope": {"name": "hand-written"},
                        "spans": [
                            {
                                "traceId": trace_id,
                                "spanId": span_id,
                                "parentSpanId": parent,
                                "name": "chat gpt-4o-mini-json-test",
                                "kind": 3,  # enums as integers: SPAN_KIND_CLIENT
                                "startTimeUnixNano": str(now_ns),
                                "endTimeUnixNano": str(now_ns + 250_000_000),
                                "attributes": attributes,
                                "aFieldFromTheFuture": {"ignored": True},
                            }
                        ],
                    }
                ],
            }
        ]
    }
    reply = serve.client.post(serve.url + "/v1/traces", content=json.dumps(body), headers=JSON)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == "application/json"
    assert reply.json() == {}  # full success: partial_success left unset
    (call,) = [c for c in stored_calls(serve) if c["model"] == "gpt-4o-mini-json-test"]
    assert (call["trace_id"], call["span_id"]) == (trace_id.lower(), span_id.lower())
    assert call["parent_span_id"] == parent.lower()
    assert (call["input_tokens"], call["latency_ms"]) == (321, 250.0)


@pytest.mark.parametrize(
    ("body", "headers", "says"),
    [
        (b"\xff\xff\xff\xff", PROTOBUF, "not a protobuf ExportTraceServiceRequest"),
        (b'{"resourceSpans": [', JSON, "not valid JSON"),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "not-hex"}]}]}]}',
            JSON,
            "resourceSpans[0].scopeSpans[0].spans[0].traceId",
        ),
        (
            gzip.compress(b"\x0a\x00" * 1000)[:-12],
            {**PROTOBUF, "content-encoding": "gzip"},
            "gzip",
        ),
        (b"[1, 2]", JSON, "must be a JSON object"),
        (b"[" * 100_000 + b"]" * 100_000, JSON, "nested too deeply"),
        (b'{"a":' * 5_000 + b"1" + b"}" * 5_000, JSON, "nested too deeply"),
    ],
    ids=["protobuf", "json", "hex-id", "truncated-gzip", "json-array", "deep-array", "deep-object"],
)
def test_an_undecodable_body_is_a_400_with_a_status_in_its_encoding(
    serve: ServeProcess, body: bytes, headers: dict[str, str], says: str
) -> None:
    reply = serve.client.post(serve.url + "/v1/traces", content=body, headers=headers)
    assert reply.status_code == 400
    assert reply.headers["content-type"] == headers["content-type"]
    status = status_of(reply)
    assert says in status.message
    assert status.code == 3  # INVALID_ARGUMENT


def test_a_declared_body_over_the_limit_is_a_413_before_it_is_sent(serve: ServeProcess) -> None:
    with Wire(serve.url) as wire:
        # Headers only: the answer must come without the body ever being sent.
        wire.start("POST", "/v1/traces", [*PROTOBUF.items(), ("content-length", str(LIMIT + 1))])
        status, _, body = wire.response()
    assert status == 413
    assert "20,971,520-byte limit" in status_pb2.Status.FromString(body).message


def test_a_gzip_bomb_is_a_413_not_a_memory_spike(serve: ServeProcess) -> None:
    bomb = gzip.compress(b"\0" * (LIMIT + 1), compresslevel=9)
    assert len(bomb) < 64 * 1024  # tiny as sent; the limit holds once decompressed
    reply = serve.client.post(
        serve.url + "/v1/traces", content=bomb, headers={**PROTOBUF, "content-encoding": "gzip"}
    )
    assert reply.status_code == 413
    assert "decompressed" in status_of(reply).message


@pytest.mark.parametrize(
    "headers",
    [{"content-type": "text/plain"}, {**PROTOBUF, "content-encoding": "br"}],
    ids=["content-type", "content-encoding"],
)
def test_other_encodings_are_a_415(serve: ServeProcess, headers: dict[str, str]) -> None:
    reply = serve.client.post(serve.url + "/v1/traces", content=b"hello", headers=headers)
    assert reply.status_code == 415
    assert "unsupported" in status_of(reply).message


def test_a_span_that_cannot_be_a_call_is_a_partial_success_and_the_rest_is_stored(
    serve: ServeProcess,
) -> None:
    good = model_attributes(**{"gen_ai.request.model": "gpt-4o-mini-partial-test"})
    bad = model_attributes(**{"gen_ai.usage.input_tokens": -5})
    spans = finished_spans(good, bad)
    # What the exporter would send, its answer read here as a collector would read it (the
    # Python exporter ignores a 200's body).
    body = encode_spans(spans).SerializeToString()
    reply = serve.client.post(serve.url + "/v1/traces", content=body, headers=PROTOBUF)
    assert reply.status_code == 200
    partial = ExportTraceServiceResponse.FromString(reply.content).partial_success
    assert partial.rejected_spans == 1
    assert "gen_ai.usage.input_tokens" in partial.error_message
    assert [c["model"] for c in stored_calls(serve) if c["model"] == good["gen_ai.request.model"]]


def test_the_same_export_sent_twice_is_stored_once_and_counted_once(serve: ServeProcess) -> None:
    model = "gpt-4o-mini-duplicate-test"
    spans = finished_spans(*[model_attributes(**{"gen_ai.request.model": model})] * 3)
    for _ in range(2):  # a retry whose first answer was lost, or a collector sending again
        assert export(spans, endpoint=serve.url + "/v1/traces") == SpanExportResult.SUCCESS
    assert len([c for c in stored_calls(serve) if c["model"] == model]) == 3
    assert scraped(serve, "aivitals_requests_total", model=model) == 3.0
    assert scraped(serve, "aivitals_tokens_total", model=model, type="input") == 3 * 1200


def test_metrics_and_logs_are_accepted_counted_and_dropped(serve: ServeProcess) -> None:
    before_points = scraped(serve, "aivitals_otlp_items_total", signal="metrics")
    before_logs = scraped(serve, "aivitals_otlp_items_total", signal="logs")
    metric_exporter = OTLPMetricExporter(endpoint=serve.url + "/v1/metrics")
    reader = PeriodicExportingMetricReader(metric_exporter, export_interval_millis=3_600_000)
    meters = MeterProvider(metric_readers=[reader])
    counter = meters.get_meter("tests.otlp").create_counter("gen_ai.client.token.usage")
    counter.add(10, {"gen_ai.token.type": "input"})
    counter.add(3, {"gen_ai.token.type": "output"})
    meters.shutdown()  # exports once: two data points, one per token type
    logs = LoggerProvider()
    log_exporter = OTLPLogExporter(endpoint=serve.url + "/v1/logs")
    logs.add_log_record_processor(SimpleLogRecordProcessor(log_exporter))
    try:
        # A GenAI event, as the instrumentations emit them (content and all).
        logs.get_logger("tests.otlp").emit(
            event_name="gen_ai.client.inference.operation.details",
            body={"gen_ai.output.messages": [{"role": "assistant", "content": "hi"}]},
        )
    finally:
        logs.shutdown()
    assert scraped(serve, "aivitals_otlp_items_total", signal="metrics") == before_points + 2
    assert scraped(serve, "aivitals_otlp_items_total", signal="logs") == before_logs + 1
    assert scraped(serve, "aivitals_http_server_requests_total", route="/v1/metrics") >= 1
    assert (
        scraped(serve, "aivitals_http_server_requests_total", route="/v1/logs", status="200") >= 1
    )


KEY = "otlp-test-ingest-key-0123456789"


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    with ServeProcess(tmp_path_factory.mktemp("keyed"), "--ingest-key", KEY) as process:
        yield process


def test_the_ingest_key_is_asked_of_the_exporter(keyed: ServeProcess) -> None:
    model = "gpt-4o-mini-keyed-test"
    spans = finished_spans(model_attributes(**{"gen_ai.request.model": model}))
    endpoint = keyed.url + "/v1/traces"
    assert export(spans, endpoint=endpoint) == SpanExportResult.FAILURE
    wrong = {"Authorization": "Bearer wrong-key"}
    assert export(spans, endpoint=endpoint, headers=wrong) == SpanExportResult.FAILURE
    assert stored_calls(keyed) == []
    right = {"Authorization": f"Bearer {KEY}"}
    assert export(spans, endpoint=endpoint, headers=right) == SpanExportResult.SUCCESS
    assert [call["model"] for call in stored_calls(keyed)] == [model]
    reply = keyed.client.post(keyed.url + "/v1/traces", content=b"", headers=JSON)
    assert reply.status_code == 401
    assert reply.headers["www-authenticate"] == "Bearer"
    assert "ingest key" in status_of(reply).message


def test_otlp_attribute_flags_say_where_feature_and_tags_come_from(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    flags = ["--otlp-attribute", "feature=myco.product_area"]
    flags += ["--otlp-attribute", "tag.customer=myco.customer"]
    with ServeProcess(tmp_path_factory.mktemp("mapped"), *flags) as mapped:
        attributes = model_attributes(
            **{"myco.product_area": "search", "myco.customer": "acme", "app.feature": "ignored"}
        )
        result = export(finished_spans(attributes), endpoint=mapped.url + "/v1/traces")
        assert result == SpanExportResult.SUCCESS
        (call,) = stored_calls(mapped)
    assert call["feature"] == "search"  # the flag replaces the defaults (app.feature among them)
    assert call["tags"]["customer"] == "acme"


def test_a_bad_otlp_attribute_flag_is_refused_at_start() -> None:
    result = CliRunner().invoke(app, ["serve", "--port", "0", "--otlp-attribute", "colour=x"])
    assert result.exit_code == 2
    assert "--otlp-attribute 'colour=x': unknown field 'colour'" in " ".join(result.output.split())
