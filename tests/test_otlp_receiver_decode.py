"""The receiver's body handling on its own: the decompression bound to the byte, gzip members,
deflate, and OTLP/JSON ids in every message that carries them."""

from __future__ import annotations

import gzip
import json
import zlib

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceResponse,
)

from aivitals.otlp.decode import LOGS, METRICS, TRACES, OtlpError, decode, decompress, encode

LIMIT = 1000


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
def test_a_body_exactly_at_the_limit_passes_and_one_byte_more_does_not(coding: str) -> None:
    def packed(data: bytes) -> bytes:
        return gzip.compress(data) if coding == "gzip" else zlib.compress(data)

    assert decompress(packed(b"x" * LIMIT), coding, limit=LIMIT) == b"x" * LIMIT
    with pytest.raises(OtlpError) as refused:
        decompress(packed(b"x" * (LIMIT + 1)), coding, limit=LIMIT)
    assert refused.value.status == 413


def test_concatenated_gzip_members_are_read_in_turn_and_bound_together() -> None:
    body = gzip.compress(b"a" * 600) + gzip.compress(b"b" * 300)
    assert decompress(body, "gzip", limit=LIMIT) == b"a" * 600 + b"b" * 300
    with pytest.raises(OtlpError) as refused:
        decompress(body + gzip.compress(b"c" * 200), "gzip", limit=LIMIT)
    assert refused.value.status == 413


def test_no_content_encoding_and_identity_are_the_body_itself() -> None:
    assert decompress(b"raw", None) == b"raw"
    assert decompress(b"raw", "identity") == b"raw"


def test_hex_ids_are_read_in_links_log_records_and_exemplars() -> None:
    trace_id, span_id = "0AF7651916CD43DD8448EB211C80319C", "B7AD6B7169203331"
    traces = {
        "resourceSpans": [
            {
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": trace_id,
                                "spanId": span_id,
                                "links": [{"traceId": trace_id, "spanId": span_id}],
                            }
                        ]
                    }
                ]
            }
        ]
    }
    span = decode(TRACES, json.dumps(traces).encode(), "json").resource_spans[0]
    link = span.scope_spans[0].spans[0].links[0]
    assert (link.trace_id.hex(), link.span_id.hex()) == (trace_id.lower(), span_id.lower())
    logs = {
        "resourceLogs": [
            {"scopeLogs": [{"logRecords": [{"traceId": trace_id, "spanId": span_id}]}]}
        ]
    }
    record = decode(LOGS, json.dumps(logs).encode(), "json")
    assert isinstance(record, ExportLogsServiceRequest)
    assert record.resource_logs[0].scope_logs[0].log_records[0].span_id.hex() == span_id.lower()
    point = {"asInt": "5", "exemplars": [{"traceId": trace_id, "spanId": span_id, "asInt": "1"}]}
    metrics = {
        "resourceMetrics": [
            {"scopeMetrics": [{"metrics": [{"name": "m", "sum": {"dataPoints": [point]}}]}]}
        ]
    }
    decoded = decode(METRICS, json.dumps(metrics).encode(), "json")
    assert isinstance(decoded, ExportMetricsServiceRequest)
    data_point = decoded.resource_metrics[0].scope_metrics[0].metrics[0].sum.data_points[0]
    assert data_point.exemplars[0].trace_id.hex() == trace_id.lower()


def test_a_partial_success_in_json_writes_its_count_as_a_string() -> None:
    response = ExportTraceServiceResponse(
        partial_success=ExportTracePartialSuccess(rejected_spans=2, error_message="why")
    )
    document = json.loads(encode(response, "json"))
    # int64 as a decimal string, keys in lowerCamelCase: the protobuf JSON mapping OTLP uses.
    assert document == {"partialSuccess": {"rejectedSpans": "2", "errorMessage": "why"}}
    assert json_format.Parse(json.dumps(document), ExportTraceServiceResponse()) == response
