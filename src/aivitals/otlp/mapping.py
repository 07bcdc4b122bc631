"""OTLP traces to calls: every span that describes a model call becomes one `Call`.

`calls_from_traces` walks an ``ExportTraceServiceRequest`` (the OTLP receiver decodes protobuf
and JSON into one), builds each model-call span's `Call` through the one `CallDraft` builder, and
counts the rest: spans that are no model call (HTTP, database, the application's own) and model
calls that cannot become a valid `Call` (with a few distinct reasons, for OTLP's
``partial_success``). Calls come out unpriced: the recorder prices them, never the sender's cost
attribute. Their ids are deterministic (`call_id_for_span`), so a retried or repeated export
records each call once.

>>> from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
>>> from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
>>> request = ExportTraceServiceRequest()
>>> spans = request.resource_spans.add().scope_spans.add().spans
>>> span = spans.add(trace_id=bytes(range(1, 17)), span_id=bytes(range(1, 9)), name="chat gpt-4o-mini",
...                  start_time_unix_nano=1_764_590_400_000_000_000,
...                  end_time_unix_nano=1_764_590_400_812_500_000)
>>> span.attributes.extend([
...     KeyValue(key="gen_ai.operation.name", value=AnyValue(string_value="chat")),
...     KeyValue(key="gen_ai.provider.name", value=AnyValue(string_value="openai")),
...     KeyValue(key="gen_ai.request.model", value=AnyValue(string_value="gpt-4o-mini")),
...     KeyValue(key="gen_ai.usage.input_tokens", value=AnyValue(int_value=1200)),
...     KeyValue(key="gen_ai.usage.output_tokens", value=AnyValue(int_value=80))])
>>> _ = spans.add(trace_id=bytes(range(1, 17)), span_id=bytes(range(2, 10)), name="GET /search")
>>> batch = calls_from_traces(request)
>>> [(c.model, c.input_tokens, c.latency_ms, c.cost_usd) for c in batch.calls], batch.not_model
([('gpt-4o-mini', 1200, 812.5, None)], 1)
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from aivitals.content import CallContent
from aivitals.draft import CallDraft
from aivitals.model import Call, InvalidRecord
from aivitals.otlp.attribute_map import DEFAULT, AttributeMap
from aivitals.otlp.content import content_of_span
from aivitals.otlp.encoded import encoded_traces
from aivitals.otlp.facts import CONTENT, table_for
from aivitals.otlp.ids import call_id_for_span
from aivitals.otlp.span_call import Attributor, SpanRejected, call_from_span, operation_of

__all__ = ["AttributeMap", "SpanBatch", "call_id_for_span", "calls_from_traces"]

MAX_REASONS = 5
"""Distinct rejection reasons kept per batch: enough to say what is wrong, bounded however many."""


@dataclass(slots=True)
class SpanBatch:
    """What one export's spans became."""

    calls: list[Call] = field(default_factory=list)
    """One per model-call span: frozen, validated, unpriced, with deterministic ids."""
    not_model: int = 0
    """Spans that are no model call (HTTP, database, the application's own): counted, not recorded."""
    rejected: int = 0
    """Model-call spans that could not become a valid `Call`."""
    reasons: list[str] = field(default_factory=list)
    """A few distinct reasons for the rejected, each naming the attribute or field at fault."""
    contents: dict[str, Callable[[], CallContent | None]] = field(default_factory=dict)
    """By call id, a thunk reading the span's messages (`otlp.content`); only when asked, and only
    for a span with an attribute its messages may be under (`content.CONTENT_PREFIXES`)."""


def calls_from_traces(
    request: ExportTraceServiceRequest,
    *,
    attributes: AttributeMap | None = None,
    price: Callable[[CallDraft], None] | None = None,
    content: bool = False,
    body: bytes | None = None,
) -> SpanBatch:
    """The calls an OTLP trace export describes, and the count of everything else. Never raises
    for a span's content: a span that cannot be a call is counted in ``rejected``, with a reason.

    ``attributes`` says which attributes carry feature, team, prompt version (and user,
    environment, kept tags); `AttributeMap` documents the defaults. ``price`` (a recorder's
    ``price_draft``) prices each call before it is frozen, so it is built and validated once;
    without it the calls come out unpriced and the recorder prices them as it records them.
    ``content`` (the recorder's ``wants_content``) keeps, per call whose span carries messages
    (an attribute they may be under), a thunk that reads them later, on the quality worker
    (`SpanBatch.contents`). ``body``: the protobuf bytes ``request`` was decoded from, when
    the caller has them (the receiver does), so they need not be encoded again.
    """
    table = table_for(attributes or DEFAULT)
    batch = SpanBatch()
    # The spans' attributes are read from their encoding (`aivitals.otlp.encoded`); the rest
    # of each span from the decoded message. Both decode the same bytes, so they pair up.
    encoded = encoded_traces(body if body is not None else request.SerializeToString())
    for resource_spans, encoded_resource in zip(
        request.resource_spans, encoded.resource_spans, strict=True
    ):
        attributor = Attributor(table, table.read_resource(resource_spans.resource.attributes))
        for scope_spans, encoded_scope in zip(
            resource_spans.scope_spans, encoded_resource.scope_spans, strict=True
        ):
            for span, encoded_span in zip(scope_spans.spans, encoded_scope.spans, strict=True):
                values, names = table.read_encoded(encoded_span.attributes, span.attributes)
                operation = operation_of(values, span.name)
                if operation is None:
                    batch.not_model += 1
                    continue
                try:
                    call = call_from_span(
                        span,
                        values,
                        names,
                        operation=operation,
                        attributor=attributor,
                        price=price,
                    )
                    batch.calls.append(call)
                    if content and values[CONTENT] is True:
                        batch.contents[call.id] = functools.partial(
                            content_of_span, span, call.finish_reason
                        )
                except (SpanRejected, InvalidRecord) as exc:
                    batch.rejected += 1
                    reason = str(exc)
                    if len(batch.reasons) < MAX_REASONS and reason not in batch.reasons:
                        batch.reasons.append(reason)
    return batch
