"""`gateway_tracer`: without an exporter the gateway's spans keep their ids and sampling flags
but are not recorded; with one they are the SDK's recorded spans."""

from __future__ import annotations

import pytest
from opentelemetry.trace import TraceFlags

from aivitals.gateway.tracing import RequestTrace, gateway_tracer

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture(autouse=True)
def no_exporter(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_TRACES_SAMPLER",
        "OTEL_TRACES_SAMPLER_ARG",
    ):
        monkeypatch.delenv(variable, raising=False)


def test_without_an_exporter_spans_keep_their_ids_and_flags_unrecorded() -> None:
    trace = RequestTrace(gateway_tracer(), {"traceparent": PARENT}, "chat", method="POST")
    upstream = trace.start_upstream("mock", "http://127.0.0.1:9/v1/chat/completions")
    sent: dict[str, str] = {}
    trace.propagate(upstream, sent)
    assert not trace.root.is_recording() and not upstream.is_recording()
    # The trace continues the client's, and the upstream is told it is sampled, as before.
    assert trace.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert trace.parent_span_id == "b7ad6b7169203331"
    version, trace_id, span_id, flags = sent["traceparent"].split("-")
    assert (version, trace_id, flags) == ("00", trace.trace_id, "01")
    assert span_id == format(upstream.get_span_context().span_id, "016x")
    assert span_id not in (trace.span_id, "b7ad6b7169203331")


def test_a_new_trace_gets_fresh_ids_sampled() -> None:
    tracer = gateway_tracer()
    first, second = (RequestTrace(tracer, {}, "chat", method="POST") for _ in range(2))
    assert first.trace_id != second.trace_id
    assert first.parent_span_id is None
    assert first.root.get_span_context().trace_flags & TraceFlags.SAMPLED


def test_the_configured_sampler_still_decides_the_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    trace = RequestTrace(gateway_tracer(), {}, "chat", method="POST")
    assert not trace.root.get_span_context().trace_flags & TraceFlags.SAMPLED
    assert int(trace.trace_id, 16) != 0  # still a real id for the call and the header


def test_with_an_exporter_spans_are_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:9/v1/traces")
    trace = RequestTrace(gateway_tracer(), {}, "chat", method="POST")
    assert trace.root.is_recording()
