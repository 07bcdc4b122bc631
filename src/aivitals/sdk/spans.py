"""OpenTelemetry spans for the SDK's calls, when the application has a `TracerProvider`.

When the global provider is a real one (the application called
``opentelemetry.trace.set_tracer_provider``), every call `track`, `observe` and `instrument`
record gets a CLIENT span named ``{gen_ai.operation.name} {model}`` (``chat gpt-4o``), current
while the call runs, with the GenAI attributes of the recorded call (`aivitals.span_attributes`)
and ``aivitals.call.id``; the `Call` records the span's trace, span and parent span ids. A
stream's span ends when the stream does. With no provider (the default proxy), nothing here runs
beyond one lookup of the global provider.

`trace_headers()` gives the W3C ``traceparent``/``tracestate`` of the SDK call span that is
current, for an instrumented client to send upstream.

>>> trace_headers()  # no provider, no span
{}
"""

from __future__ import annotations

import logging
import os
from contextlib import suppress
from contextvars import ContextVar, Token
from importlib.metadata import version
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from opentelemetry import context as otel_context
from opentelemetry import trace as otel
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from aivitals.span_attributes import (
    ERROR_TYPE,
    OPERATION,
    OPERATIONS,
    PROVIDER,
    REQUEST_MODEL,
    RESPONSE_ID,
    SERVER_ADDRESS,
    SERVER_PORT,
    call_attributes,
    span_name,
)

if TYPE_CHECKING:
    from aivitals.draft import CallDraft
    from aivitals.model import Call

log = logging.getLogger("aivitals.sdk")

_propagator = TraceContextTextMapPropagator()


class _Tracers:
    """The SDK's tracer for the global provider, looked up again only when the provider changes.

    Until the application sets a provider, a call gets no span and costs one read of the API's
    global: `opentelemetry.trace.get_tracer_provider` would also look up an environment variable
    each time (about 1 µs, as much as the rest of a call's Prometheus update), so it is only
    asked when that variable (``OTEL_PYTHON_TRACER_PROVIDER``) names a provider to load.
    """

    __slots__ = ("from_env", "provider", "tracer")

    def __init__(self) -> None:
        self.provider: object = None
        self.tracer: otel.Tracer | None = None
        self.from_env = "OTEL_PYTHON_TRACER_PROVIDER" in os.environ

    def get(self) -> otel.Tracer | None:
        provider: otel.TracerProvider | None = otel._TRACER_PROVIDER  # set once, by the app
        if provider is None:
            if not self.from_env:
                return None
            provider = otel.get_tracer_provider()
        if provider is self.provider:
            return self.tracer
        tracer = None
        if not isinstance(provider, otel.ProxyTracerProvider | otel.NoOpTracerProvider):
            tracer = provider.get_tracer("aivitals.sdk", version("aivitals"))
        self.provider, self.tracer = provider, tracer
        return tracer


_tracers = _Tracers()


def tracing_possible() -> bool:
    """False when no call can get a span (no provider set, none to load): checked inline,
    a call's cheapest way to skip `start_call_span`."""
    return otel._TRACER_PROVIDER is not None or _tracers.from_env


class CallSpan:
    """The span of one SDK call: started with the call, ended (once) with it."""

    __slots__ = ("_attached", "_open", "ended", "response_id", "server", "span")

    def __init__(self, span: otel.Span) -> None:
        self.span = span
        self.ended = False
        self.response_id: str | None = None
        self.server: tuple[str, int | None] | None = None
        self._attached: Token[Any] | None = None
        self._open: Token[CallSpan | None] | None = None

    def attach(self) -> None:
        """Make the span the current one (for the block of a ``with``)."""
        if self._attached is None:
            self._attached = otel_context.attach(otel.set_span_in_context(self.span))

    def detach(self) -> None:
        if self._attached is not None:
            otel_context.detach(self._attached)
            self._attached = None


# The call span most recently started in this context and not ended: what `trace_headers`
# names. An instrumented client starts its call without a ``with`` block, so the span cannot be
# made current there without leaking into the caller's code while a stream is open.
_open: ContextVar[CallSpan | None] = ContextVar("aivitals_call_span", default=None)


def trace_headers() -> dict[str, str]:
    """The W3C ``traceparent`` (and ``tracestate``) of the current SDK call span; ``{}`` when none.

    Never raises.
    """
    handle = _open.get()
    if handle is None or handle.ended:
        return {}
    try:
        carrier: dict[str, str] = {}
        _propagator.inject(carrier, context=otel.set_span_in_context(handle.span))
        return carrier
    except Exception:  # the SDK never raises into the application
        log.debug("aivitals: could not write a traceparent", exc_info=True)
        return {}


def start_call_span(draft: CallDraft, *, label: str | None = None) -> CallSpan | None:
    """A span for a call starting now, child of the current span; None without a provider.

    With ``label`` the span is a scope until it ends (`observe`'s function, which is a call only
    if nothing inside it records one): named so, and with no GenAI attribute yet.
    """
    tracer = _tracers.get()
    if tracer is None:
        return None
    try:
        parent = otel.get_current_span().get_span_context()
        attributes: dict[str, AttributeValue] | None = None
        if label is None:
            # Known at the start, so a sampler can see them (as the conventions ask).
            attributes = {OPERATION: OPERATIONS.get(draft.operation, draft.operation)}
            if draft.provider:
                attributes[PROVIDER] = draft.provider
            if draft.model:
                attributes[REQUEST_MODEL] = draft.model
        span = tracer.start_span(
            label or span_name(draft.operation, draft.model),
            kind=SpanKind.CLIENT,
            attributes=attributes,
        )
        context = span.get_span_context()
        if context.trace_flags.sampled and draft.trace_id is None:
            # An unsampled span is exported nowhere: no id on the call would lead to it.
            draft.trace_id = format(context.trace_id, "032x")
            draft.span_id = format(context.span_id, "016x")
            draft.parent_span_id = format(parent.span_id, "016x") if parent.is_valid else None
        handle = CallSpan(span)
        handle._open = _open.set(handle)
        return handle
    except Exception:
        log.exception("aivitals: could not start a span for call %s", draft.id)
        return None


def end_call_span(
    handle: CallSpan, draft: CallDraft, recorded: Call | None, *, scope: bool = False
) -> None:
    """End the call's span with what the call became. ``scope``: it recorded no call itself."""
    if handle.ended:
        return
    handle.ended = True
    span = handle.span
    try:
        if handle._open is not None:
            with suppress(ValueError):  # ended in another context (a stream read elsewhere)
                _open.reset(handle._open)
            handle._open = None
        if scope:
            span.end()
            return
        span.update_name(span_name(draft.operation, draft.model))
        if recorded is not None:
            attributes = call_attributes(recorded)
        else:
            attributes = {OPERATION: OPERATIONS.get(draft.operation, draft.operation)}
            if draft.provider:
                attributes[PROVIDER] = draft.provider
            if draft.model:
                attributes[REQUEST_MODEL] = draft.model
            if draft.error_type:
                attributes[ERROR_TYPE] = draft.error_type
        if handle.response_id:
            attributes[RESPONSE_ID] = handle.response_id
        if handle.server is not None:
            attributes[SERVER_ADDRESS] = handle.server[0]
            if handle.server[1] is not None:
                attributes[SERVER_PORT] = handle.server[1]
        span.set_attributes(attributes)
        if draft.status == "error":
            span.set_status(Status(StatusCode.ERROR, draft.error_message or draft.error_type))
        span.end()
    except Exception:
        log.exception("aivitals: could not end the span of call %s", draft.id)


def server_of(url: str) -> tuple[str, int | None] | None:
    """``server.address`` and ``server.port`` of a base URL (the scheme's port when unsaid)."""
    try:
        parts = urlsplit(url)
        if not parts.hostname:
            return None
        port = parts.port or {"https": 443, "http": 80}.get(parts.scheme)
        return parts.hostname, port
    except ValueError:
        return None
