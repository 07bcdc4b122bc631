"""One proxied request: what is known about it so far, and the `Call` it becomes."""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from aivitals.attribution import Attribution
from aivitals.bounds import CALL_TEXT_CHARS
from aivitals.errors import ErrorInfo
from aivitals.estimate import estimate_prompt_tokens
from aivitals.gateway.limits import Limit
from aivitals.gateway.tracing import RequestTrace
from aivitals.gateway.upstreams import Upstream
from aivitals.model import CacheResult, Call, Operation, clean_text, utc_now
from aivitals.usage import TokenUsage

if TYPE_CHECKING:
    from aivitals.gateway.budgets import Hold

PATHS: dict[Operation, str] = {
    "chat": "chat/completions",
    "text_completion": "completions",
    "embeddings": "embeddings",
    "other": "",
}
"""The upstream path of each operation, under the upstream's base URL (``.../v1``)."""


class Exchange:
    """A request on its way through the gateway, from its parsed body to its recorded call."""

    __slots__ = (
        "attribution",
        "body",
        "cache",
        "cache_key",
        "hold",
        "limits",
        "model",
        "operation",
        "started_at",
        "t0",
        "trace",
        "ttft_ms",
        "upstream",
    )

    def __init__(
        self,
        *,
        operation: Operation,
        model: str,
        upstream: Upstream,
        attribution: Attribution,
        body: Mapping[str, Any],
        trace: RequestTrace,
        t0: float,
        started_at: datetime | None = None,
    ) -> None:
        self.operation = operation
        self.model = model
        self.upstream = upstream
        self.attribution = attribution
        self.body = body
        self.trace = trace
        self.started_at = started_at or utc_now()
        self.t0 = t0
        self.ttft_ms: float | None = None
        self.limits: list[Limit] = []
        self.cache: CacheResult | None = None
        self.cache_key: str | None = None
        self.hold: Hold | None = None  # the budget reserve, released when the call ends

    def call(
        self,
        *,
        usage: TokenUsage | None = None,
        estimated: bool = False,
        status: str = "ok",
        error: ErrorInfo | None = None,
        response_model: str | None = None,
        finish_reason: str | None = None,
        http_status: int | None = None,
        saved_usd: Decimal | None = None,
    ) -> Call:
        who = self.attribution
        usage = usage or TokenUsage()
        hit = self.cache == "hit"
        return Call(
            provider=self.upstream.provider,
            model=self.model,
            operation=self.operation,
            latency_ms=(time.perf_counter() - self.t0) * 1000.0,
            started_at=self.started_at,
            trace_id=self.trace.trace_id,
            span_id=self.trace.span_id,
            parent_span_id=self.trace.parent_span_id,
            ttft_ms=self.ttft_ms,
            response_model=_fit(response_model, "response_model"),
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cached_input_tokens=usage.cached_input_tokens,
            reasoning_tokens=usage.reasoning_tokens,
            tokens_estimated=estimated,
            # A hit is not sent to the provider: it costs nothing and is not priced again.
            cost_usd=Decimal(0) if hit else None,
            price_source="cache" if hit else None,
            saved_usd=saved_usd,
            status="error" if error is not None else status,  # type: ignore[arg-type]  # a Status
            error_type=error.error_type if error is not None else None,
            error_message=_fit(error.message, "error_message") if error is not None else None,
            http_status=http_status
            if http_status is not None
            else (error.http_status if error else None),
            finish_reason=_fit(finish_reason, "finish_reason"),
            cache=self.cache,
            cache_level="exact" if self.cache is not None else None,
            endpoint=f"/v1/{PATHS[self.operation]}",
            user=who.user,
            feature=who.feature,
            team=who.team,
            prompt_version=who.prompt_version,
            environment=who.environment,
            tags=dict(who.tags),
        )

    def estimated_usage(self, output_tokens: int) -> TokenUsage:
        prompt = estimate_prompt_tokens(
            self.body.get("messages"), self.body.get("prompt") or self.body.get("input")
        )
        return TokenUsage(input_tokens=prompt, output_tokens=output_tokens)


def _fit(text: str | None, field: str) -> str | None:
    """Text the upstream chose, cut to its store column and made storable (NULs and lone
    surrogates replaced): an odd answer must not keep its call from being recorded."""
    if text is None:
        return None
    text = text[: CALL_TEXT_CHARS[field]]
    if clean_text(text):
        return text
    return text.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")
