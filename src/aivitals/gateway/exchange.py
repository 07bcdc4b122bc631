"""One proxied request: what is known about it so far, and the `Call` it becomes."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from aivitals.attribution import Attribution
from aivitals.bounds import CALL_TEXT_CHARS
from aivitals.draft import NO_USAGE, CallDraft
from aivitals.errors import ErrorInfo
from aivitals.estimate import estimate_prompt_tokens
from aivitals.gateway.dialect import Dialect
from aivitals.gateway.gpu_time import BusyMeter, gpu_cost, gpu_price_source
from aivitals.gateway.limits import Limit
from aivitals.gateway.overhead import Overhead
from aivitals.gateway.tracing import RequestTrace
from aivitals.gateway.upstreams import Upstream
from aivitals.model import Call, Operation, Status, clean_text
from aivitals.usage import TokenUsage

if TYPE_CHECKING:
    from aivitals.gateway.budgets import Hold
    from aivitals.gateway.semantic_cache import Pending

PATHS: dict[Operation, str] = {
    "chat": "chat/completions",
    "text_completion": "completions",
    "embeddings": "embeddings",
    "other": "",
}
"""The upstream path of each operation, under the upstream's base URL (``.../v1``)."""


class Exchange(CallDraft):
    """A request on its way through the gateway, from its parsed body to its recorded call.

    A `CallDraft`: what the gateway learns lands in the draft's fields, and `call` freezes it.
    """

    __slots__ = (
        "body",
        "cache_key",
        "dialect",
        "gpu",
        "hold",
        "limits",
        "path",
        "price",
        "semantic",
        "t0",
        "trace",
        "upstream",
        "watch",
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
        price: Callable[[CallDraft], None] | None = None,
        dialect: Dialect | None = None,
        watch: Overhead | None = None,
    ) -> None:
        super().__init__(
            provider=upstream.provider,
            model=model,
            operation=operation,
            attribution=attribution,
            started_at=started_at,
        )
        self.upstream = upstream
        self.body = body
        self.trace = trace
        self.t0 = t0
        # The gateway's own time on this request (`overhead`): the proxy adds its waits.
        self.watch = watch if watch is not None else Overhead(t0)
        # The recorder's `price_draft`: the call is priced before it is built, and built once.
        self.price = price
        # A native route (Anthropic's Messages, the Responses API), or None for OpenAI's own.
        self.dialect = dialect
        self.path = dialect.path if dialect is not None else PATHS[operation]
        self.endpoint = f"/v1/{self.path}"
        # (meter, its reading at the start) while a GPU-hour upstream works on this request.
        self.gpu: tuple[BusyMeter, float] | None = None
        self.limits: list[Limit] = []
        self.cache_key: str | None = None
        # The question the semantic cache embedded, indexed if its answer is cached.
        self.semantic: Pending | None = None
        self.hold: Hold | None = None  # the budget reserve, released when the call ends

    def call(
        self,
        *,
        usage: TokenUsage | None = None,
        estimated: bool = False,
        status: Status = "ok",
        error: ErrorInfo | None = None,
        response_model: str | None = None,
        finish_reason: str | None = None,
        http_status: int | None = None,
        saved_usd: Decimal | None = None,
        service_tier: str | None = None,
    ) -> Call:
        """The call as it ended now, with what the answer said (`CallDraft.freeze`)."""
        self.trace_id = self.trace.trace_id
        self.span_id = self.trace.span_id
        self.parent_span_id = self.trace.parent_span_id
        self.set_tokens(usage or NO_USAGE, estimated=estimated)
        self.response_model = _fit(response_model, "response_model")
        self.finish_reason = _fit(finish_reason, "finish_reason")
        self.saved_usd = saved_usd
        if self.cache is None:
            self.cache_level = None
        elif self.cache_level is None:  # the semantic cache sets its own level
            self.cache_level = "exact"
        if status == "cancelled":
            self.cancel()
        if error is not None:
            self.fail(error)
            self.error_message = _fit(error.message, "error_message")
        if http_status is not None:
            self.http_status = http_status
        if service_tier is not None:
            self.service_tier = _fit(service_tier, "service_tier")
        if self.gpu is not None:
            self.priced = self._gpu_priced()
        elif self.price is not None:
            self.priced = None
            self.price(self)
        return self.freeze(latency_ms=(time.perf_counter() - self.t0) * 1000.0)

    def _gpu_priced(self) -> dict[str, Any]:
        """The cost of this call's share of its upstream's busy time (`gpu_time`), once."""
        assert self.gpu is not None
        if self.priced is not None and "price_source" in self.priced:
            return self.priced
        meter, started = self.gpu
        rate = self.upstream.gpu_hour_usd
        assert rate is not None
        return {
            "cost_usd": gpu_cost(meter.end(started), rate),
            "price_source": gpu_price_source(self.upstream.name, rate),
        }

    def estimated_usage(self, output_tokens: int) -> TokenUsage:
        given = self.body.get("prompt") or self.body.get("input")
        messages = self.body.get("messages")
        if messages is None and isinstance(given, list) and given and isinstance(given[0], dict):
            messages, given = given, None  # the Responses API's input items are messages
        prompt = estimate_prompt_tokens(messages, given)
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
