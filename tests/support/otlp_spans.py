"""Hand-built OTLP spans: protobuf messages exactly as an exporter sends them."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

AttrValue = str | bool | int | float | list[str] | list[int]

START_NS = 1_764_590_400_000_000_000  # 2025-12-01T12:00:00Z
START = datetime(2025, 12, 1, 12, tzinfo=UTC)
TRACE_ID = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
_span_ids = itertools.count(1)


def any_value(value: AttrValue) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, str):
        return AnyValue(string_value=value)
    return AnyValue(array_value=ArrayValue(values=[any_value(item) for item in value]))


def key_values(attrs: Mapping[str, AttrValue]) -> list[KeyValue]:
    return [KeyValue(key=key, value=any_value(value)) for key, value in attrs.items()]


def span(
    attrs: Mapping[str, AttrValue],
    *,
    name: str = "chat gpt-4o-mini",
    trace_id: bytes = TRACE_ID,
    span_id: bytes | None = None,
    parent_span_id: bytes = b"",
    start_ns: int = START_NS,
    duration_ms: float = 800.0,
    error: str | None = None,
    events: Iterable[Span.Event] = (),
) -> Span:
    """A finished CLIENT span; ``error`` sets an ERROR status with that message."""
    built = Span(
        trace_id=trace_id,
        span_id=span_id if span_id is not None else next(_span_ids).to_bytes(8, "big"),
        parent_span_id=parent_span_id,
        name=name,
        kind=Span.SPAN_KIND_CLIENT,
        start_time_unix_nano=start_ns,
        end_time_unix_nano=start_ns + int(duration_ms * 1_000_000),
        attributes=key_values(attrs),
        events=list(events),
    )
    if error is not None:
        built.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR, message=error))
    return built


def event(name: str, at_ms: float, attrs: Mapping[str, AttrValue] | None = None) -> Span.Event:
    return Span.Event(
        name=name,
        time_unix_nano=START_NS + int(at_ms * 1_000_000),
        attributes=key_values(attrs or {}),
    )


def export(
    *spans: Span, resource: Mapping[str, AttrValue] | None = None, scope: str = "test"
) -> ExportTraceServiceRequest:
    """One resource, one scope, these spans: as the SDK's encoder lays them out."""
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.extend(key_values(resource or {}))
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name = scope
    scope_spans.spans.extend(spans)
    return request


CHAT: dict[str, AttrValue] = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o-mini",
}
"""The attributes every current-convention chat span has; tests add usage and the rest."""
