"""Span attributes read from their encoding (aivitals.otlp.encoded, FactTable.read_encoded) give
exactly what reading the decoded message gives."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from aivitals.otlp import facts
from aivitals.otlp.attribute_map import DEFAULT, AttributeMap
from aivitals.otlp.encoded import encoded_traces
from aivitals.otlp.facts import FactTable
from aivitals.otlp.mapping import calls_from_traces
from aivitals.otlp.values import Value
from tests.support.otlp_spans import CHAT, AttrValue, export, span

SPANS: list[Mapping[str, AttrValue]] = [
    {**CHAT, "gen_ai.usage.input_tokens": 1200, "gen_ai.usage.output_tokens": 80},
    # Two names of one fact, the less trusted first; then the other way round.
    {**CHAT, "gen_ai.usage.prompt_tokens": 7, "gen_ai.usage.input_tokens": 12},
    {**CHAT, "gen_ai.usage.input_tokens": 12, "gen_ai.usage.prompt_tokens": 7},
    # Empty and zero values, a flag, a double, arrays, text where a count is expected.
    {**CHAT, "gen_ai.request.user": "", "user.id": "u-1", "gen_ai.usage.output_tokens": 0},
    {**CHAT, "gen_ai.request.stream": True, "gen_ai.response.time_to_first_chunk": 0.25},
    {**CHAT, "gen_ai.response.finish_reasons": ["", "stop"], "http.status_code": "200"},
    {**CHAT, "gen_ai.usage.input_tokens": "12", "gen_ai.response.finish_reasons": [1, 2]},
    # Content under a fact's name and under no fact's name; attributes of nobody's.
    {**CHAT, "gen_ai.prompt.0.content": "hi", "http.route": "/chat", "db.system": "x"},
    {**CHAT, "gen_ai.input.messages": '[{"role": "user", "parts": []}]'},
    {"http.method": "GET", "url.full": "https://example.com/" + "x" * 300},
    {**CHAT, "app.feature": "search", "tenant.id": "t-1", "gen_ai.provider.name": "openai"},
]


Read = tuple[list[Value], list[str | None]]


def both(table: FactTable, request: ExportTraceServiceRequest) -> list[tuple[Read, Read]]:
    encoded = encoded_traces(request.SerializeToString())
    pairs: list[tuple[Read, Read]] = []
    for resource, encoded_resource in zip(
        request.resource_spans, encoded.resource_spans, strict=True
    ):
        for scope, encoded_scope in zip(
            resource.scope_spans, encoded_resource.scope_spans, strict=True
        ):
            for one, encoded_one in zip(scope.spans, encoded_scope.spans, strict=True):
                pairs.append(
                    (
                        table.read(one.attributes),
                        table.read_encoded(encoded_one.attributes, one.attributes),
                    )
                )
    return pairs


@pytest.mark.parametrize(
    "attribute_map",
    [DEFAULT, AttributeMap.from_pairs(["feature=app.feature", "tag.tenant=tenant.id"])],
)
def test_encoded_attributes_read_as_the_decoded_ones(attribute_map: AttributeMap) -> None:
    table = FactTable(attribute_map)
    request = export(*(span(attrs) for attrs in SPANS))
    for _ in range(2):  # the attributes unknown, then all remembered
        pairs = both(table, request)
        assert len(pairs) == len(SPANS)
        for decoded, encoded in pairs:
            assert encoded == decoded


def test_a_remembered_list_is_each_span_s_own() -> None:
    table = FactTable(DEFAULT)
    request = export(span({**CHAT, "gen_ai.response.finish_reasons": ["stop"]}))
    ((_, (first, _)),) = both(table, request)  # read, and remembered
    reasons = first[facts.FINISH_REASONS]
    assert isinstance(reasons, list)
    reasons.append("mutated")
    ((_, (again, _)),) = both(table, request)  # known by its bytes
    assert again[facts.FINISH_REASONS] == ["stop"]


def test_past_its_bound_what_is_remembered_starts_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(facts, "_KNOWN", 3)
    table = FactTable(DEFAULT)
    request = export(*(span(attrs) for attrs in SPANS))
    for decoded, encoded in both(table, request):
        assert encoded == decoded
    assert len(table._known) <= 3


def test_spans_pair_up_across_resources_and_scopes() -> None:
    request = ExportTraceServiceRequest()
    for service in ("a", "b"):
        resource_spans = request.resource_spans.add()
        resource_spans.resource.attributes.add(
            key="service.name", value=AnyValue(string_value=service)
        )
        for scope in range(2):
            scope_spans = resource_spans.scope_spans.add()
            for n in range(scope + 1):
                scope_spans.spans.append(
                    span(
                        {
                            **CHAT,
                            "user.id": f"{service}-{scope}-{n}",
                            "gen_ai.usage.input_tokens": n,
                        }
                    )
                )
    users = [call.user for call in calls_from_traces(request).calls]
    assert users == ["a-0-0", "a-1-0", "a-1-1", "b-0-0", "b-1-0", "b-1-1"]
    same = calls_from_traces(request, body=request.SerializeToString()).calls
    assert [call.user for call in same] == users


def test_an_attribute_laid_out_another_way_reads_the_same() -> None:
    # Value before key, and the key sent twice (protobuf: the last one counts): valid
    # encodings no SDK writes, which must still read as protobuf reads them.
    value = AnyValue(string_value="anthropic").SerializeToString()
    odd = (
        b"\x12"
        + bytes([len(value)])
        + value
        + b"\x0a\x03abc"
        + b"\x0a"
        + bytes([len(b"gen_ai.provider.name")])
        + b"gen_ai.provider.name"
    )
    assert KeyValue.FromString(odd).key == "gen_ai.provider.name"
    plain = export(span({"gen_ai.operation.name": "chat", "gen_ai.request.model": "claude-x"}))
    body = plain.SerializeToString()
    # Splice the odd attribute into the one span: append it as another field 9 of the span.
    request = ExportTraceServiceRequest.FromString(body)
    request.resource_spans[0].scope_spans[0].spans[0].attributes.append(KeyValue.FromString(odd))
    spliced = _with_raw_attribute(plain, odd)
    assert ExportTraceServiceRequest.FromString(spliced) == request
    (call,) = calls_from_traces(ExportTraceServiceRequest.FromString(spliced), body=spliced).calls
    assert (call.provider, call.model) == ("anthropic", "claude-x")


def _with_raw_attribute(request: ExportTraceServiceRequest, attribute: bytes) -> bytes:
    """The request's bytes with ``attribute`` appended to its only span, as raw bytes."""
    one = request.resource_spans[0].scope_spans[0].spans[0]
    span_bytes = one.SerializeToString() + b"\x4a" + _varint(len(attribute)) + attribute
    scope = request.resource_spans[0].scope_spans[0]
    scope_bytes = b"".join(
        [
            b"\x0a"
            + _varint(len(scope.scope.SerializeToString()))
            + scope.scope.SerializeToString(),
            b"\x12" + _varint(len(span_bytes)) + span_bytes,
        ]
    )
    resource = request.resource_spans[0].resource.SerializeToString()
    resource_spans = b"\x0a" + _varint(len(resource)) + resource
    resource_spans += b"\x12" + _varint(len(scope_bytes)) + scope_bytes
    return b"\x0a" + _varint(len(resource_spans)) + resource_spans


def _varint(number: int) -> bytes:
    out = bytearray()
    while True:
        byte = number & 0x7F
        number >>= 7
        if number:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)
