"""OTLP/HTTP bodies in and out: the content type, the compression, the size bound, the message.

As the OTLP specification (opentelemetry-proto ``docs/specification.md``, "OTLP/HTTP") has it:
``application/x-protobuf`` or ``application/json``, answered in the same type; ``gzip`` (and
``deflate``, which the OpenTelemetry Python exporter also offers) decompressed under a bound, so a
small compressed body cannot expand into gigabytes; and every failure answered with a
``google.rpc.Status`` in the request's encoding. OTLP/JSON differs from protobuf's JSON mapping
in one way that matters to a parser: trace and span ids are hex, not base64, so they are turned
into base64 before `json_format.ParseDict` reads the rest (unknown fields ignored, as the
specification asks).

No web framework here: `aivitals.server.otlp` calls these with the bytes it read.

>>> from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
>>> body = b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174", "name": "chat"}]}]}]}'
>>> request = decode(TRACES, body, "json")
>>> span = request.resource_spans[0].scope_spans[0].spans[0]
>>> span.trace_id.hex(), span.name
('5b8efff798038103d269b633813fc60c', 'chat')
>>> encode(TRACES.response(), "json")
b'{}'
"""

from __future__ import annotations

import base64
import json
import zlib
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

Encoding = Literal["protobuf", "json"]

MAX_BODY_BYTES = 20 * 1024 * 1024
"""The specification's recommended limit, as sent and once decompressed: 20 MiB."""

CONTENT_TYPES: dict[Encoding, str] = {
    "protobuf": "application/x-protobuf",
    "json": "application/json",
}

Req = TypeVar(
    "Req", ExportTraceServiceRequest, ExportMetricsServiceRequest, ExportLogsServiceRequest
)
Resp = TypeVar(
    "Resp", ExportTraceServiceResponse, ExportMetricsServiceResponse, ExportLogsServiceResponse
)


@dataclass(frozen=True, slots=True)
class Signal(Generic[Req, Resp]):
    """One OTLP signal: its path, and the request and response messages it exchanges."""

    name: str
    path: str
    request: type[Req]
    response: type[Resp]


TRACES = Signal("traces", "/v1/traces", ExportTraceServiceRequest, ExportTraceServiceResponse)
METRICS = Signal(
    "metrics", "/v1/metrics", ExportMetricsServiceRequest, ExportMetricsServiceResponse
)
LOGS = Signal("logs", "/v1/logs", ExportLogsServiceRequest, ExportLogsServiceResponse)


class OtlpError(Exception):
    """A request the receiver refuses, with the HTTP status, the gRPC code for its `Status`,
    and, for bad data, the field at fault (``resourceSpans[0].scopeSpans[0].spans[2].traceId``).
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: int = code_pb2.INVALID_ARGUMENT,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.field = field
        self.headers = headers or {}


def too_large(limit: int) -> OtlpError:
    return OtlpError(
        413,
        f"the request body is over the {limit:,}-byte limit (as sent or decompressed); "
        "export smaller batches (the batch processor's max_export_batch_size)",
        code=code_pb2.RESOURCE_EXHAUSTED,
    )


def encoding_of(content_type: str | None) -> Encoding:
    """The body's encoding from its ``Content-Type`` (parameters such as charset ignored)."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    for encoding, name in CONTENT_TYPES.items():
        if media == name:
            return encoding
    raise OtlpError(
        415,
        f"unsupported Content-Type {media or '(none)'!r}: OTLP/HTTP sends "
        "application/x-protobuf or application/json",
    )


# zlib's wbits: 16 + MAX_WBITS reads a gzip member, MAX_WBITS a zlib stream (HTTP's "deflate").
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def decompress(body: bytes, content_encoding: str | None, *, limit: int = MAX_BODY_BYTES) -> bytes:
    """``body`` as the sender encoded it, at most ``limit`` bytes once decompressed.

    Hand-written over `zlib.decompressobj` because the standard library's one-call
    decompressors (`gzip.decompress`, `zlib.decompress`) have no output bound: a 20 KB gzip
    bomb would become 20 GB before anything could refuse it. Here at most ``limit + 1`` bytes
    are ever produced. Concatenated gzip members (allowed by RFC 1952) are read in turn.
    """
    coding = (content_encoding or "identity").strip().lower()
    if coding == "identity":
        return body
    wbits = _WBITS.get(coding)
    if wbits is None:
        raise OtlpError(
            415,
            f"unsupported Content-Encoding {coding!r}: send gzip, deflate or no compression",
        )
    out: list[bytes] = []
    size = 0
    data = body
    while data:
        stream = zlib.decompressobj(wbits)
        try:
            # At most what the limit leaves, plus one byte to tell "exactly full" from "over".
            chunk = stream.decompress(data, limit + 1 - size)
        except zlib.error as exc:
            raise OtlpError(400, f"the body is not valid {coding}: {exc}") from None
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        out.append(chunk)
        if not stream.eof:
            raise OtlpError(400, f"the {coding} body ends early (truncated)")
        data = stream.unused_data if coding == "gzip" else b""
    return b"".join(out)


def decode(signal: Signal[Req, Resp], body: bytes, encoding: Encoding) -> Req:
    """``body`` (decompressed) as ``signal``'s request message; `OtlpError` 400 if it is not."""
    if encoding == "protobuf":
        try:
            return signal.request.FromString(body)
        except DecodeError as exc:
            raise OtlpError(400, f"the body is not a protobuf {_name(signal)}: {exc}") from None
    try:
        document = json.loads(body)
        if not isinstance(document, dict):
            raise OtlpError(400, f"the body must be a JSON object ({_name(signal)})")
        _hex_ids_to_base64(document, "")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise OtlpError(400, f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        # No OTLP message nests more than a few tens of levels (key-value lists in attributes).
        raise OtlpError(400, "the JSON body is nested too deeply to be an OTLP export") from None
    try:
        return json_format.ParseDict(document, signal.request(), ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise OtlpError(400, f"the body is not an OTLP/JSON {_name(signal)}: {exc}") from None


def encode(message: Message, encoding: Encoding) -> bytes:
    """``message`` in ``encoding``; JSON as OTLP/JSON writes it (camelCase, int64 as strings)."""
    if encoding == "protobuf":
        return message.SerializeToString()
    text = json_format.MessageToJson(message, indent=None, preserving_proto_field_name=False)
    return text.encode()


def status_body(error: OtlpError, encoding: Encoding) -> bytes:
    """The ``google.rpc.Status`` answering ``error``; a bad field named in a ``BadRequest``."""
    status = status_pb2.Status(code=error.code, message=error.message)
    if error.field is not None:
        violation = error_details_pb2.BadRequest.FieldViolation(
            field=error.field, description=error.message
        )
        status.details.add().Pack(error_details_pb2.BadRequest(field_violations=[violation]))
    return encode(status, encoding)


_ID_FIELDS = {
    "traceId": 16,
    "spanId": 8,
    "parentSpanId": 8,
    "trace_id": 16,
    "span_id": 8,
    "parent_span_id": 8,
}


def _hex_ids_to_base64(node: Any, where: str) -> None:
    """Rewrite every trace and span id in ``node`` (a decoded OTLP/JSON document) in place.

    Ids appear in spans, links, log records and metric exemplars: a walk over the whole
    document finds them all. Keys of attributes never collide with these, since an attribute's
    key is a value (``{"key": "traceId", ...}``), not a JSON key.
    """
    if isinstance(node, dict):
        for key, value in node.items():
            path = f"{where}.{key}" if where else key
            size = _ID_FIELDS.get(key)
            if size is not None and isinstance(value, str):
                node[key] = _hex_id(value, size, path)
            elif isinstance(value, dict | list):
                _hex_ids_to_base64(value, path)
    elif isinstance(node, list):
        for index, item in enumerate(node):
            if isinstance(item, dict | list):
                _hex_ids_to_base64(item, f"{where}[{index}]")


def _hex_id(text: str, size: int, where: str) -> str:
    if text == "":
        return text  # an unset parent span id
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raw = b""
    if len(raw) != size:
        raise OtlpError(
            400,
            f"{where}: {text[:40]!r} is not a {size}-byte id in hex "
            f"({size * 2} hex digits, as OTLP/JSON writes ids)",
            field=where,
        )
    return base64.b64encode(raw).decode()


def _name(signal: Signal[Any, Any]) -> str:
    name: str = signal.request.DESCRIPTOR.name
    return name
