"""Trace spans for each gateway request: one per stage, under one server span.

The stages are ``auth``, ``rate_limit``, ``budget``, ``cache_lookup``, ``upstream`` (a client
span, from sending the request to the upstream's status line) and ``response`` (relaying the body
to the client; for a stream, until its last event). An incoming W3C ``traceparent`` makes the
request span its child; the upstream request carries a ``traceparent`` naming the ``upstream``
span, so a provider (or another aivitals) continues the same trace. The trace id goes back to the
client in the ``X-Aivitals-Trace-Id`` header and into the recorded `Call`.

The request span carries the recorded call's GenAI attributes (`aivitals.span_attributes`, the
same as the SDK's spans), the request's (``gen_ai.request.stream``, ``max_tokens``,
``temperature``), the HTTP server attributes and ``aivitals.call.id``; the ``upstream`` span the
upstream's real ``server.address``/``server.port``, and an error status when the upstream failed
or answered 4xx/5xx.

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
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import trace as otel
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from aivitals.config import ConfigError
from aivitals.errors import ErrorInfo
from aivitals.model import Call
from aivitals.span_attributes import (
    ERROR_TYPE,
    REQUEST_MAX_TOKENS,
    REQUEST_STREAM,
    REQUEST_TEMPERATURE,
    RESPONSE_ID,
    SERVER_ADDRESS,
    SERVER_PORT,
    call_attributes,
)

TRACE_HEADER = "x-aivitals-trace-id"
_propagator = TraceContextTextMapPropagator()
_PROTOCOLS = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")


def tracer_provider(*, service_name: str = "aivitals-gateway") -> TracerProvider:
    """A provider for the gateway's spans, configured by the standard ``OTEL_*`` variables.

    ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES`` make the resource (``service_name``
    when neither names the service), ``OTEL_TRACES_SAMPLER``/``_ARG`` the sampler; spans are
    exported over OTLP/HTTP (protobuf) when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
    ``..._TRACES_ENDPOINT``) is set; then an exporter protocol other than ``http/protobuf``
    (``grpc``, ``http/json``) raises `ConfigError`, as its spans would be lost.

    Without an endpoint spans are still made (the trace ids are real and go into every `Call`
    and response header) but go nowhere (`gateway_tracer` does not record them).
    """
    env = os.environ
    exporting = _exporting()
    for variable in _PROTOCOLS if exporting else ():
        protocol = env.get(variable, "").strip()
        if not protocol:
            continue
        if protocol != "http/protobuf":
            raise ConfigError(
                f"{variable}={protocol!r}: aivitals exports spans over OTLP/HTTP with protobuf "
                "only; set it to 'http/protobuf' (or unset it) and point the endpoint at an "
                "OTLP/HTTP receiver (port 4318 on a collector)"
            )
        break  # the traces-specific variable, when set, is the one that counts
    resource = Resource.create()
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        # Neither OTEL_SERVICE_NAME nor OTEL_RESOURCE_ATTRIBUTES named the service.
        resource = resource.merge(Resource({"service.name": service_name}))
    provider = TracerProvider(resource=resource)
    if exporting:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
            OTLPSpanExporter,
        )

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


def tracer_for(provider: otel.TracerProvider) -> otel.Tracer:
    return provider.get_tracer("aivitals.gateway", version("aivitals"))


def _exporting() -> bool:
    env = os.environ
    return bool(
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def gateway_tracer() -> otel.Tracer:
    """The tracer a `Gateway` uses when given none: `tracer_provider`'s, exporting or not.

    Without an exporter nothing can read the spans, so they are not recorded (`_Unrecorded`):
    each still has its real ids and the sampler's verdict in its flags, so the trace id in the
    calls and headers and the ``traceparent`` sent upstream are what they were. A recorded span
    (attributes cleaned and bounded, events, links) was about a tenth of the gateway's CPU per
    request in a closed-loop profile, for spans that went nowhere.
    """
    provider = tracer_provider()
    if _exporting():
        return tracer_for(provider)
    quiet = TracerProvider(resource=provider.resource, sampler=_Unrecorded(provider.sampler))
    return tracer_for(quiet)


class _SampledUnrecorded:
    """A sampling decision the SDK has no value for: sampled (the flag goes on in the span's
    context, and upstream) but not recorded (the SDK makes a `NonRecordingSpan`)."""

    @staticmethod
    def is_recording() -> bool:
        return False

    @staticmethod
    def is_sampled() -> bool:
        return True


class _Unrecorded(Sampler):
    """``sampler``'s verdicts, with nothing recorded."""

    def __init__(self, sampler: Sampler) -> None:
        self.sampler = sampler

    def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
        said = self.sampler.should_sample(*args, **kwargs)
        if said.decision is not Decision.RECORD_AND_SAMPLE:  # what is_sampled() says
            return SamplingResult(Decision.DROP, trace_state=said.trace_state)
        result = SamplingResult(Decision.DROP, trace_state=said.trace_state)
        result.decision = _SampledUnrecorded()  # type: ignore[assignment]
        return result

    def get_description(self) -> str:
        return f"Unrecorded{{{self.sampler.get_description()}}}"


def _hex(value: int, width: int) -> str:
    return format(value, f"0{width}x")


class RequestTrace:
    """The spans of one request. ``headers`` are the client's (for ``traceparent``).

    Given the request's ``method`` (and ``path``), the request span waits for both the call
    (`end`) and the answer's status (`answered`), whichever comes last, so it carries
    ``http.response.status_code`` however the request went.
    """

    __slots__ = (
        "_called",
        "_context",
        "_failed",
        "_status",
        "parent_span_id",
        "response_id",
        "root",
        "tracer",
    )

    def __init__(
        self,
        tracer: otel.Tracer,
        headers: Mapping[str, str],
        name: str,
        *,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        self.tracer = tracer
        incoming = _propagator.extract(headers)
        parent = otel.get_current_span(incoming).get_span_context()
        self.parent_span_id = _hex(parent.span_id, 16) if parent.is_valid else None
        attributes: dict[str, AttributeValue] = {}
        if method is not None:
            attributes["http.request.method"] = method
        if path is not None:
            attributes["url.path"] = path
        self.root = tracer.start_span(
            name, context=incoming, kind=SpanKind.SERVER, attributes=attributes
        )
        self._context: Context = otel.set_span_in_context(self.root)
        self.response_id: str | None = None
        """The provider's id of the response (its body's ``id``), when the gateway read it."""
        self._called = False
        self._failed = False
        # No status to wait for when the caller will not say it (no method given).
        self._status: int | None = None if method is not None else 0

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

    def describe(self, body: Mapping[str, Any]) -> None:
        """The request's own GenAI attributes, from its parsed body (as sent, when valid)."""
        attributes: dict[str, AttributeValue] = {REQUEST_STREAM: body.get("stream") is True}
        # Chat's two names, then the Responses API's (Anthropic's is max_tokens too).
        limit = body.get("max_completion_tokens", body.get("max_tokens"))
        if limit is None:
            limit = body.get("max_output_tokens")
        if type(limit) is int:
            attributes[REQUEST_MAX_TOKENS] = limit
        temperature = body.get("temperature")
        if isinstance(temperature, int | float) and not isinstance(temperature, bool):
            attributes[REQUEST_TEMPERATURE] = float(temperature)
        self.root.set_attributes(attributes)

    def start_upstream(self, name: str, url: str) -> Span:
        """The ``upstream`` client span of a request to ``url`` (upstream ``name``)."""
        attributes: dict[str, AttributeValue] = {
            "aivitals.upstream": name,
            "http.request.method": "POST",
        }
        server = _server_of(url)
        if server is not None:
            attributes[SERVER_ADDRESS], attributes[SERVER_PORT] = server
        return self.tracer.start_span(
            "upstream", context=self._context, kind=SpanKind.CLIENT, attributes=attributes
        )

    @staticmethod
    def end_upstream(span: Span, status: int) -> None:
        """End the upstream span at the status line; 4xx and 5xx are errors of this client."""
        span.set_attribute("http.response.status_code", status)
        if status >= 400:
            span.set_attribute(ERROR_TYPE, str(status))
            span.set_status(Status(StatusCode.ERROR, f"the upstream answered {status}"))
        span.end()

    @staticmethod
    def fail_upstream(span: Span, info: ErrorInfo) -> None:
        """End the upstream span of a request that got no answer (refused, timed out...)."""
        span.set_attribute(ERROR_TYPE, info.error_type)
        span.set_status(Status(StatusCode.ERROR, info.message))
        span.end()

    def refuse(self, status: int, reason: str) -> None:
        """End the request span for a request answered by the gateway itself (401, 429...)."""
        self.root.set_attribute("http.response.status_code", status)
        self.root.set_status(Status(StatusCode.ERROR, reason))
        self._status = status
        self._called = True
        self.root.end()

    def answered(self, status: int) -> None:
        """The status the client was answered with (the request span may end now)."""
        if self._status is not None:  # said already (refused)
            return
        self._status = status
        if self._called:
            self._end_root()

    def abort(self, status: int = 500) -> None:
        """End the request span now, answered ``status``: the request failed on a bug."""
        if self._status is not None and self._called:  # ended already
            return
        self._status = status
        self._called = True
        self._end_root()

    def end(self, call: Call | None = None) -> None:
        """End the request span, with the call's GenAI attributes when there is one."""
        if self._called:
            return
        self._called = True
        if call is not None:
            attributes = call_attributes(call)
            if call.http_status:
                attributes["http.response.status_code"] = call.http_status
            if self.response_id:
                attributes[RESPONSE_ID] = self.response_id
            self.root.set_attributes(attributes)
            if call.status == "error":
                self.root.set_status(Status(StatusCode.ERROR, call.error_message or ""))
                self._failed = True
        if self._status is not None:
            self._end_root()

    def _end_root(self) -> None:
        if self._status:
            self.root.set_attribute("http.response.status_code", self._status)
            if self._status >= 500 and not self._failed:
                # A server span is in error for 5xx only (HTTP conventions); a 4xx passed on
                # from the upstream is the client's error, and the call's status says so.
                self.root.set_status(Status(StatusCode.ERROR))
        self.root.end()


def _server_of(url: str) -> tuple[str, int] | None:
    try:
        parts = urlsplit(url)
        port = parts.port or {"https": 443, "http": 80}.get(parts.scheme)
    except ValueError:
        return None
    if not parts.hostname or port is None:
        return None
    return parts.hostname, port
