"""What an OTLP export becomes: traces into calls, durably; metrics and logs counted and dropped.

`OtlpReceiver` takes a decoded export request. For traces: the mapping
(`aivitals.otlp.mapping.calls_from_traces`) turns each model-call span into a `Call`, and
`Recorder.record_durably` commits them to the store before anything else sees them, exactly as
the JSON ingest API does, so a 200 means the calls are on disk, and a call the store already has
(an exporter's retry, a duplicate export) is stored and counted once. The answer's
``partial_success`` says how many model-call spans could not be recorded, and why.

Metrics and logs are accepted to the specification and dropped: metrics are aggregates that
cannot become per-call records (and would count the spans' calls twice), and GenAI log events
carry prompt and response content, which belongs to content capture (docs/otel.md, "Receiver").
What arrives is counted either way (`Outcome`).

Refusals are `OtlpError`s the sender should retry: 429 while the recorder's queue is too full to
take the batch, 503 while the store cannot be written, each with ``Retry-After``. Nothing of a
refused export is recorded anywhere.

No web framework here; `aivitals.server.otlp` serves this over HTTP.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from google.rpc import code_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from aivitals.draft import CallDraft
from aivitals.model import Call
from aivitals.otlp.decode import OtlpError
from aivitals.otlp.mapping import calls_from_traces
from aivitals.quality.stage import ContentSource
from aivitals.recorder import Recorder
from aivitals.store.errors import StoreError


class SpanCalls(Protocol):
    """What the mapping makes of one export (`aivitals.otlp.mapping.SpanBatch`)."""

    @property
    def calls(self) -> list[Call]: ...
    @property
    def not_model(self) -> int: ...
    @property
    def rejected(self) -> int: ...
    @property
    def reasons(self) -> list[str]: ...
    @property
    def contents(self) -> Mapping[str, ContentSource]: ...


class TraceMapping(Protocol):
    """Spans to calls: `calls_from_traces` with the server's `AttributeMap`.

    ``price`` is the recorder's ``price_draft``: each call is priced before it is built, so it
    is built and validated once rather than built, priced and built again.
    """

    def __call__(
        self,
        request: ExportTraceServiceRequest,
        *,
        price: Callable[[CallDraft], None] | None,
        content: bool = False,
        body: bytes | None = None,
    ) -> SpanCalls: ...


@dataclass(slots=True)
class Outcome:
    """How many items of one accepted export went where, by outcome (for the metrics)."""

    signal: str
    counts: dict[str, int] = field(default_factory=dict)


class Refused(OtlpError):
    """An export refused whole, so its sender keeps it: ``reason`` and how many ``spans``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        reason: str,
        spans: int,
        code: int,
        retry_after_s: float | None = None,
    ) -> None:
        headers = (
            {"Retry-After": str(max(1, math.ceil(retry_after_s)))}
            if retry_after_s is not None
            else None
        )
        super().__init__(status, message, code=code, headers=headers)
        self.reason = reason
        self.spans = spans


class OtlpReceiver:
    """Turns decoded OTLP exports into recorded calls (traces) and counts (metrics, logs).

    ``mapping`` is `calls_from_traces` with the server's attribute map (the default map when
    None).
    """

    def __init__(self, *, mapping: TraceMapping | None = None) -> None:
        self._mapping: TraceMapping = mapping or calls_from_traces

    def traces(
        self,
        request: ExportTraceServiceRequest,
        *,
        recorder: Recorder,
        queue_limit: int | None = None,
        body: bytes | None = None,
    ) -> tuple[ExportTraceServiceResponse, Outcome]:
        """Record the export's model calls durably; the answer and what became of each span.

        ``queue_limit``: refuse (429) a batch that would take the recorder's queue past this
        many waiting items, rather than let it drop part of an acknowledged batch. ``body``:
        the protobuf bytes ``request`` was decoded from, when it came so (the mapping reads the
        spans' attributes from them, `aivitals.otlp.encoded`).
        """
        spans = sum(len(scope.spans) for rs in request.resource_spans for scope in rs.scope_spans)
        batch = self._mapping(
            request, price=recorder.price_draft, content=recorder.wants_content, body=body
        )
        calls = batch.calls
        if queue_limit is not None and recorder.queue_depth + len(calls) > queue_limit:
            raise Refused(
                429,
                "the server is behind writing to its store; retry this export shortly",
                reason="busy",
                spans=spans,
                code=code_pb2.RESOURCE_EXHAUSTED,
                retry_after_s=1,
            )
        if calls:
            try:
                recorder.record_durably(calls, batch.contents)
            except StoreError as exc:
                raise _refused(exc, spans) from None
        response = ExportTraceServiceResponse()
        if batch.rejected:
            reasons = "; ".join(batch.reasons) or "no reason given"
            response.partial_success.CopyFrom(
                ExportTracePartialSuccess(
                    rejected_spans=batch.rejected,
                    error_message=(
                        f"{batch.rejected} model-call span(s) could not be recorded as calls: "
                        f"{reasons}"
                    ),
                )
            )
        outcome = Outcome(
            "traces",
            {"recorded": len(calls), "not_model": batch.not_model, "rejected": batch.rejected},
        )
        return response, outcome

    def metrics(
        self, request: ExportMetricsServiceRequest
    ) -> tuple[ExportMetricsServiceResponse, Outcome]:
        """Count the export's data points; they are dropped (see the module docstring)."""
        points = 0
        for resource in request.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    kind = metric.WhichOneof("data")
                    if kind is not None:
                        points += len(getattr(metric, kind).data_points)
        return ExportMetricsServiceResponse(), Outcome("metrics", {"dropped": points})

    def logs(self, request: ExportLogsServiceRequest) -> tuple[ExportLogsServiceResponse, Outcome]:
        """Count the export's log records; they are dropped (see the module docstring)."""
        records = sum(
            len(scope.log_records) for rl in request.resource_logs for scope in rl.scope_logs
        )
        return ExportLogsServiceResponse(), Outcome("logs", {"dropped": records})


def _refused(exc: StoreError, spans: int) -> OtlpError:
    if not exc.retryable:
        # The database refused the data itself: a retry would fail the same way (400: the
        # exporter must not retry).
        return Refused(
            400,
            f"the store refused this export: {exc}; nothing was recorded",
            reason="invalid",
            spans=spans,
            code=code_pb2.INVALID_ARGUMENT,
        )
    return Refused(
        503,
        f"the store cannot be written now, nothing was recorded; retry this export ({exc})",
        reason="unavailable",
        spans=spans,
        code=code_pb2.UNAVAILABLE,
        # The store sink's back-off when it knows one; otherwise a second is a fair guess.
        retry_after_s=exc.retry_after_s or 1,
    )
