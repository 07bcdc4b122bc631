"""Trace spans for each gateway request: one per stage, under one server span.

The stages are ``auth``, ``rate_limit``, ``budget``, ``cache_lookup``, ``upstream`` (a client
span, from sending the request to the upstream's status line) and ``response`` (relaying the body
to the client; for a stream, until its last event). An incoming W3C ``traceparent`` makes the
request span its child; the upstream request carries a ``traceparent`` naming the ``upstream``
span, so a provider (or another aivitals) continues the same trace. The trace id goes back to the
client in the ``X-Aivitals-Trace-Id`` header and into the recorded `Call`.

Spans are started and ended explicitly, never through the current context: a streamed body is
sent by another task than the one that received the request.

>>> from opentelemetry.sdk.trace import TracerProvider
>>> trace = RequestTrace(tracer_for(TracerProvider()), {"traceparent":
...     "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}, "chat gpt-4o")
>>> trace.trace_id, trace.parent_span_id
('0af7651916cd43dd8448eb211c80319c', 'b7ad6b7169203331')
>>> with trace.stage("auth"):
...     pass
>>> trace.end()
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from importlib.metadata import version

from opentelemetry import trace as otel
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from aivitals.model import Call

TRACE_HEADER = "x-aivitals-trace-id"
_propagator = TraceContextTextMapPropagator()


def tracer_provider(*, service_name: str = "aivitals-gateway") -> TracerProvider:
    """A provider for the gateway's spans; exported over OTLP/HTTP when the standard
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``..._TRACES_ENDPOINT``) variable is set.

    Without an endpoint spans are still made (the trace ids are real and go into every `Call`
    and response header) but go nowhere.
    """
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    ):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
            OTLPSpanExporter,
        )

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


def tracer_for(provider: otel.TracerProvider) -> otel.Tracer:
    return provider.get_tracer("aivitals.gateway", version("aivitals"))


def _hex(value: int, width: int) -> str:
    return format(value, f"0{width}x")


class RequestTrace:
    """The spans of one request. ``headers`` are the client's (for ``traceparent``)."""

    __slots__ = ("_context", "parent_span_id", "root", "tracer")

    def __init__(self, tracer: otel.Tracer, headers: Mapping[str, str], name: str) -> None:
        self.tracer = tracer
        incoming = _propagator.extract(headers)
        parent = otel.get_current_span(incoming).get_span_context()
        self.parent_span_id = _hex(parent.span_id, 16) if parent.is_valid else None
        self.root = tracer.start_span(name, context=incoming, kind=SpanKind.SERVER)
        self._context: Context = otel.set_span_in_context(self.root)

    @property
    def trace_id(self) -> str:
        return _hex(self.root.get_span_context().trace_id, 32)

    @property
    def span_id(self) -> str:
        return _hex(self.root.get_span_context().span_id, 16)

    def start(self, name: str, *, kind: SpanKind = SpanKind.INTERNAL) -> Span:
        """A stage that ends somewhere else (call ``.end()`` on it)."""
        return self.tracer.start_span(name, context=self._context, kind=kind)

    @contextmanager
    def stage(self, name: str) -> Iterator[Span]:
        span = self.start(name)
        try:
            yield span
        finally:
            span.end()

    def propagate(self, span: Span, headers: MutableMapping[str, str]) -> None:
        """Write the ``traceparent`` naming ``span`` into the upstream request's headers."""
        _propagator.inject(headers, context=otel.set_span_in_context(span))

    def refuse(self, status: int, reason: str) -> None:
        """End the request span for a request answered by the gateway itself (401, 429...)."""
        self.root.set_attribute("http.response.status_code", status)
        self.root.set_status(Status(StatusCode.ERROR, reason))
        self.root.end()

    def end(self, call: Call | None = None) -> None:
        """End the request span, with the call's GenAI attributes when there is one."""
        if call is not None:
            self.root.set_attributes(_genai_attributes(call))
            if call.status == "error":
                self.root.set_status(Status(StatusCode.ERROR, call.error_message or ""))
        self.root.end()


def _genai_attributes(call: Call) -> dict[str, AttributeValue]:
    # OpenTelemetry GenAI semantic conventions; aivitals.* for what they have no name for.
    operation = {"chat": "chat", "text_completion": "text_completion", "embeddings": "embeddings"}
    attributes: dict[str, AttributeValue] = {
        "gen_ai.operation.name": operation.get(call.operation, call.operation),
        "gen_ai.provider.name": call.provider,
        "gen_ai.request.model": call.model,
        "gen_ai.usage.input_tokens": call.input_tokens,
        "gen_ai.usage.output_tokens": call.output_tokens,
        "aivitals.call_id": call.id,
        "aivitals.status": call.status,
    }
    if call.response_model:
        attributes["gen_ai.response.model"] = call.response_model
    if call.cached_input_tokens:
        attributes["gen_ai.usage.cache_read.input_tokens"] = call.cached_input_tokens
    if call.finish_reason:
        attributes["gen_ai.response.finish_reasons"] = [call.finish_reason]
    if call.error_type:
        attributes["error.type"] = call.error_type
    if call.http_status:
        attributes["http.response.status_code"] = call.http_status
    if call.cost_usd is not None:
        attributes["aivitals.cost_usd"] = float(call.cost_usd)
    if call.cache:
        attributes["aivitals.cache"] = call.cache
    return attributes
