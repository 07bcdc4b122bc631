"""`CallDraft`: the one mutable record every source fills, and freezes into a `Call`.

A source learns about a call bit by bit: when it started, the model, the first token, the usage,
the outcome. The gateway's `Exchange` and the SDK's `TrackedCall` are drafts (they subclass this),
as the OTLP receiver's spans will be; the draft names each fact once, and `fields` is the one
place where a `Call` is assembled from them. As a mutable OpenTelemetry ``Span`` ends into a
``ReadableSpan``, `freeze` ends a draft into a frozen `Call`, validated once.

Pricing is not here: the recorder prices every call that arrives without a ``price_source``
(a response-cache hit included: it costs 0). A draft only carries a cost that was priced
elsewhere (a client's own, sent to the ingest API).

>>> from aivitals.usage import TokenUsage
>>> draft = CallDraft(provider="openai", model="gpt-4o-mini")
>>> draft.usage = TokenUsage(input_tokens=1200, cached_input_tokens=1024, output_tokens=80)
>>> draft.fail(TimeoutError("upstream took too long"))
>>> call = draft.freeze(latency_ms=30_000.0)
>>> call.status, call.error_type, call.input_tokens, call.cost_usd is None
('error', 'timeout', 1200, True)
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from decimal import Decimal
from typing import Any

from aivitals.attribution import EMPTY, Attribution
from aivitals.errors import ErrorInfo, classify_error
from aivitals.model import CacheLevel, CacheResult, Call, Operation, Status, new_id, utc_now
from aivitals.usage import TokenUsage

NO_USAGE = TokenUsage()

CANCELLATIONS = (asyncio.CancelledError, GeneratorExit, KeyboardInterrupt)
"""Exceptions that mean the caller went away, not that the provider failed: ``cancelled``."""


class CallDraft:
    """A call being observed: every fact a source may learn, by the `Call` field it becomes.

    Attributes are plain and writable; ``usage`` holds the tokens, ``attribution`` who and what
    the call is for. The outcome is ``ok`` until `fail` or `cancel` says otherwise.
    """

    __slots__ = (
        "attribution",
        "cache",
        "cache_level",
        "context_window",
        "endpoint",
        "error_message",
        "error_type",
        "finish_reason",
        "http_status",
        "id",
        "model",
        "operation",
        "parent_span_id",
        "priced",
        "provider",
        "quantization",
        "queue_ms",
        "response_model",
        "saved_usd",
        "service_tier",
        "span_id",
        "started_at",
        "status",
        "tokens_estimated",
        "trace_id",
        "ttft_ms",
        "usage",
    )

    def __init__(
        self,
        *,
        provider: str | None,
        model: str | None,
        operation: Operation = "chat",
        attribution: Attribution = EMPTY,
        started_at: datetime | None = None,
        id: str | None = None,  # the Call field's name
    ) -> None:
        self.id = id or new_id()
        self.provider = provider
        self.model = model
        self.operation: Operation = operation
        self.attribution = attribution
        self.started_at = started_at or utc_now()
        self.trace_id: str | None = None
        self.span_id: str | None = None
        self.parent_span_id: str | None = None
        self.ttft_ms: float | None = None
        self.queue_ms: float | None = None
        self.response_model: str | None = None
        self.usage = NO_USAGE
        self.tokens_estimated = False
        self.status: Status = "ok"
        self.error_type: Any = None
        self.error_message: str | None = None
        self.http_status: int | None = None
        self.finish_reason: str | None = None
        self.cache: CacheResult | None = None
        self.cache_level: CacheLevel | None = None
        self.saved_usd: Decimal | None = None
        self.context_window: int | None = None
        self.endpoint: str | None = None
        # The tier as the provider's response reported it: the recorder prices by it.
        self.service_tier: str | None = None
        self.quantization: str | None = None
        self.priced: dict[str, Any] | None = None

    def set_tokens(self, usage: TokenUsage, *, estimated: bool = False) -> None:
        """The call's usage, in aivitals' convention (`aivitals.usage` normalises providers')."""
        self.usage = usage
        self.tokens_estimated = estimated

    def fail(self, error: BaseException | ErrorInfo) -> None:
        """The outcome from an exception (classified) or an `ErrorInfo`; a cancellation cancels."""
        if isinstance(error, CANCELLATIONS):
            self.cancel()
            return
        info = error if isinstance(error, ErrorInfo) else classify_error(error)
        self.status = "error"
        self.error_type = info.error_type
        self.error_message = info.message
        if info.http_status is not None:
            self.http_status = info.http_status

    def cancel(self) -> None:
        """The caller went away before the end: recorded, and never an error."""
        self.status = "cancelled"
        self.error_type = None
        self.error_message = None

    def fields(self, *, latency_ms: float) -> dict[str, Any]:
        """Every `Call` field this draft knows, by name: the one place a call is assembled."""
        who = self.attribution
        usage = self.usage
        fields: dict[str, Any] = {
            "id": self.id,
            "provider": self.provider,
            "model": self.model,
            "operation": self.operation,
            "latency_ms": latency_ms,
            "started_at": self.started_at,
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "parent_span_id": self.parent_span_id,
            "ttft_ms": self.ttft_ms,
            "queue_ms": self.queue_ms,
            "response_model": self.response_model,
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "cached_input_tokens": usage.cached_input_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
            "reasoning_tokens": usage.reasoning_tokens,
            "cache_write_1h_tokens": usage.cache_write_1h_tokens,
            "server_tool_uses": dict(usage.server_tool_uses),
            "tokens_estimated": self.tokens_estimated,
            "service_tier": self.service_tier,
            "quantization": self.quantization,
            "saved_usd": self.saved_usd,
            "status": self.status,
            "error_type": self.error_type,
            "error_message": self.error_message,
            "http_status": self.http_status,
            "finish_reason": self.finish_reason,
            "cache": self.cache,
            "cache_level": self.cache_level,
            "context_window": self.context_window,
            "user": who.user,
            "feature": who.feature,
            "team": who.team,
            "endpoint": self.endpoint or who.endpoint,
            "prompt_version": who.prompt_version,
            "environment": who.environment,
            "tags": dict(who.tags),
        }
        if self.priced:
            fields.update(self.priced)
        return fields

    def freeze(self, *, latency_ms: float) -> Call:
        """The `Call`; raises `aivitals.model.InvalidRecord` naming a field that cannot be right."""
        return Call(**self.fields(latency_ms=latency_ms))
