"""`track`: record one model call by hand, around whatever code makes it.

>>> import aivitals
>>> with aivitals.track(model="gpt-4o-mini", provider="openai", feature="search") as call:
...     call.set_usage(input_tokens=1200, cached_input_tokens=1024, output_tokens=80)
>>> call.recorded is not None and call.recorded.cost_usd is not None
True

An exception inside the block is classified (`aivitals.errors`), recorded with the call, and
re-raised unchanged. Nothing aivitals does in here raises into your code.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import msgspec

from aivitals.attribution import Attribution
from aivitals.content import CallContent
from aivitals.draft import CallDraft
from aivitals.extract.any_response import content_of_response
from aivitals.finish import finish_reason_from_anthropic
from aivitals.model import (
    CacheLevel,
    CacheResult,
    Call,
    InvalidRecord,
    Operation,
    utc_now,
)
from aivitals.salvage import salvage_call
from aivitals.sdk.context import _attribution, set_last_call_id
from aivitals.sdk.runtime import Runtime, get_runtime
from aivitals.sdk.spans import CallSpan, end_call_span, server_of, start_call_span
from aivitals.usage import usage_from_response

log = logging.getLogger("aivitals.sdk")

_current: ContextVar[TrackedCall | None] = ContextVar("aivitals_current_call", default=None)


class TrackedCall(CallDraft):
    """The handle of a call in progress: tell it what happened; it is recorded when the block ends.

    Every method is safe to call from your code: none raises, and values that make no sense are
    logged and dropped rather than breaking the call being observed.
    """

    __slots__ = (
        "_children",
        "_extra",
        "_finished",
        "_in_flight_key",
        "_label",
        "_only_if_alone",
        "_runtime",
        "_span",
        "_started",
        "_t0",
        "_tokens",
        "_who",
        "content_source",
        "error",
        "recorded",
    )

    def __init__(
        self,
        *,
        model: str | None,
        provider: str | None = None,
        operation: Operation = "chat",
        attribution: Attribution | None = None,
        only_if_alone: bool = False,
        runtime: Runtime | None = None,
    ) -> None:
        super().__init__(provider=provider, model=model, operation=operation, started_at=_NEVER)
        self.error: BaseException | None = None
        self.recorded: Call | None = None
        self._extra = attribution or _EMPTY_ATTRIBUTION
        self._who: Attribution | None = None
        self._only_if_alone = only_if_alone
        self._children = 0
        self._runtime = runtime
        self._t0 = 0.0
        self._started = False
        self._finished = False
        self._tokens: tuple[Token[Attribution], Token[TrackedCall | None]] | None = None
        self._in_flight_key: tuple[str, str] | None = None
        self._span: CallSpan | None = None
        # A scope's span name (`observe`'s function) until it turns out to be the call.
        self._label: str | None = None
        # What the call said and answered, built later on the quality worker (`wants_content`).
        self.content_source: Callable[[], CallContent | None] | None = None

    def wants_content(self) -> bool:
        """Whether anything reads calls' content (evaluators, judge, capture): only then do
        sources keep references to build it from, and never build it on the caller's thread."""
        try:
            runtime = self._runtime or get_runtime()
            return runtime.enabled and runtime.recorder.wants_content
        except Exception:
            return False

    def set_usage(
        self,
        usage: Any = None,
        *,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        cached_input_tokens: int | None = None,
        cache_write_tokens: int | None = None,
        reasoning_tokens: int | None = None,
        estimated: bool = False,
    ) -> None:
        """Say how many tokens the call used.

        Pass a provider's usage object (OpenAI or Anthropic, object or dict; it is normalised so
        ``input_tokens`` includes cached tokens), or the counts as keywords in that convention.
        """
        try:
            if usage is not None:
                self.usage = usage_from_response(usage, provider=self.provider)
            given = {
                "input_tokens": input_tokens,
                "output_tokens": output_tokens,
                "cached_input_tokens": cached_input_tokens,
                "cache_write_tokens": cache_write_tokens,
                "reasoning_tokens": reasoning_tokens,
            }
            # replace, not a new TokenUsage: the fields not named here (1-hour writes, tool uses)
            # stay as the provider's usage said.
            changes = {name: value for name, value in given.items() if value is not None}
            if changes:
                self.usage = msgspec.structs.replace(self.usage, **changes)
            self.tokens_estimated = estimated
        except Exception:
            log.exception("aivitals: could not read the usage given to call %s", self.id)

    def set_response(self, response: Any) -> None:
        """Read model, usage and finish reason from an OpenAI or Anthropic response object."""
        try:
            model = getattr(response, "model", None)
            if isinstance(model, str) and model:
                self.response_model = model
            self.set_response_id(getattr(response, "id", None))
            usage = getattr(response, "usage", None)
            if usage is not None:
                self.set_usage(usage)
            choices = getattr(response, "choices", None)
            if choices:
                self.finish_reason = (
                    getattr(choices[0], "finish_reason", None) or self.finish_reason
                )
            stop_reason = getattr(response, "stop_reason", None)
            if isinstance(stop_reason, str):
                self.finish_reason = finish_reason_from_anthropic(stop_reason)
            tier = getattr(response, "service_tier", None) or getattr(usage, "service_tier", None)
            if isinstance(tier, str) and tier:
                self.service_tier = tier
            if self.wants_content():
                self.content_source = lambda: content_of_response(response, self.finish_reason)
        except Exception:
            log.exception("aivitals: could not read the response of call %s", self.id)

    def set_response_id(self, response_id: object) -> None:
        """The provider's id of its response (``chatcmpl-...``, ``msg_...``): the span's
        ``gen_ai.response.id``. Anything but text is ignored."""
        if self._span is not None and isinstance(response_id, str) and response_id:
            self._span.response_id = response_id[:256]

    def set_server(self, base_url: str) -> None:
        """Name the server the call goes to (a client's base URL): the span's ``server.*``."""
        if self._span is not None:
            self._span.server = server_of(base_url)

    def active(self) -> _Active:
        """A block in which this call's span is the current one (``with call.active(): ...``).

        `track` and `observe` do this themselves; a wrapper that calls `start` and `finish`
        uses it around the provider request so spans made inside it are the call's children.
        """
        return _Active(self._span)

    def mark_first_token(self) -> None:
        """Note that the first token (or chunk) arrived now: the call's time to first token."""
        if self.ttft_ms is None and self._started:
            self.ttft_ms = (time.perf_counter() - self._t0) * 1000.0

    def set_cache(self, result: CacheResult, level: CacheLevel = "exact") -> None:
        self.cache = result
        self.cache_level = level

    def tag(self, **tags: object) -> None:
        """Add free-form tags to this call."""
        self._extra = self._extra.merged(tags=tags)
        self._who = None

    def score(self, name: str, value: float, **options: Any) -> None:
        """Attach a quality score to this call (see `aivitals.score`)."""
        from aivitals.sdk.record import score  # noqa: PLC0415  # record imports this module

        score(
            self.id, name, value, model=self.model, feature=self._attribution().feature, **options
        )

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        self.started_at = utc_now()
        self._t0 = time.perf_counter()
        try:
            runtime = self._runtime = self._runtime or get_runtime()
            if runtime.enabled and self.model:
                self._in_flight_key = (self._provider(runtime), self.model)
                runtime.recorder.call_started(*self._in_flight_key)
            if runtime.enabled:
                self._span = start_call_span(
                    self, label=self._label if self._only_if_alone else None
                )
        except Exception:
            log.exception("aivitals: could not start tracking a call")

    def finish(self, error: BaseException | None = None) -> Call | None:
        """End the call now and record it (once); returns the recorded call."""
        if self._finished:
            return self.recorded
        self._finished = True
        recorded = self._finish(error)
        if self._span is not None:
            # `observe` that recorded nothing was a scope (its calls have their own spans).
            end_call_span(self._span, self, recorded, scope=self._only_if_alone and not recorded)
        return recorded

    def _finish(self, error: BaseException | None) -> Call | None:
        if self._started:
            latency_ms = (time.perf_counter() - self._t0) * 1000.0
        else:  # finished without a start: an instant, now
            latency_ms, self.started_at = 0.0, utc_now()
        try:
            runtime = self._runtime or get_runtime()
            if self._in_flight_key is not None:
                runtime.recorder.call_ended(*self._in_flight_key)
            if error is not None:
                self.error = error
            parent = _current.get()
            if self._only_if_alone and self._children:
                return None
            if not runtime.enabled or not self.model:
                return None
            call = self._build(runtime, latency_ms)
            if call is None:
                return None
            self.recorded = runtime.recorder.record(call, self.content_source)
            set_last_call_id(call.id)
            if parent is not None and parent is not self:
                parent._children += 1
            return self.recorded
        except Exception:
            log.exception("aivitals: could not record call %s", self.id)
            return None

    def _provider(self, runtime: Runtime) -> str:
        if not self.provider:
            found = runtime.recorder.pricer.provider_for(self.model) if self.model else None
            self.provider = found or "unknown"
        return self.provider

    def _attribution(self) -> Attribution:
        if self._who is None:
            runtime = self._runtime or get_runtime()
            outer = _attribution.get()
            base = (
                runtime.defaults if outer is _EMPTY_ATTRIBUTION else _merge(runtime.defaults, outer)
            )
            extra = self._extra
            self._who = base if extra is _EMPTY_ATTRIBUTION else _merge(base, extra)
        return self._who

    def _build(self, runtime: Runtime, latency_ms: float) -> Call | None:
        if self.error is not None:
            self.fail(self.error)
        self.attribution = self._attribution()
        self._provider(runtime)
        # Priced by the recorder before it is built, so the call is validated once; refused
        # tokens take the price with them.
        runtime.recorder.price_draft(self)
        try:
            call, refusals = salvage_call(self.fields(latency_ms=latency_ms))
        except InvalidRecord as exc:
            log.warning("aivitals: call %s not recorded: %s", self.id, exc)
            runtime.recorder.stats.refused += 1
            return None
        for refusal in refusals:
            # Keep the call (latency, outcome, attribution) and drop what was wrong with it.
            log.warning(
                "aivitals: call %s had an invalid %s (%s); recorded without it",
                self.id,
                refusal.field,
                refusal,
            )
        return call

    def __enter__(self) -> TrackedCall:
        self._tokens = (_attribution.set(self._attribution()), _current.set(self))
        self.start()
        if self._span is not None:
            self._span.attach()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._span is not None:
            self._span.detach()
        if self._tokens is not None:
            attribution_token, current_token = self._tokens
            _current.reset(current_token)
            _attribution.reset(attribution_token)
            self._tokens = None
        self.finish(exc)

    async def __aenter__(self) -> TrackedCall:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)


class _Active:
    __slots__ = ("_span",)

    def __init__(self, span: CallSpan | None) -> None:
        self._span = span

    def __enter__(self) -> None:
        if self._span is not None:
            self._span.attach()

    def __exit__(self, *exc: object) -> None:
        if self._span is not None:
            self._span.detach()


_EMPTY_ATTRIBUTION = _attribution.get()
_NEVER = datetime.fromtimestamp(0, UTC)


def _merge(base: Attribution, top: Attribution) -> Attribution:
    return top if base == _EMPTY_ATTRIBUTION else top.over(base)


def track(
    *,
    model: str,
    provider: str | None = None,
    operation: Operation = "chat",
    user: str | None = None,
    feature: str | None = None,
    team: str | None = None,
    endpoint: str | None = None,
    prompt_version: str | None = None,
    environment: str | None = None,
    tags: Mapping[str, object] | None = None,
) -> TrackedCall:
    """Record one model call around a block (``with`` or ``async with``); see the module docs.

    ``provider`` defaults to the one the price catalog knows the model from.
    """
    return TrackedCall(
        model=model,
        provider=provider,
        operation=operation,
        attribution=_EMPTY_ATTRIBUTION.merged(
            user=user,
            feature=feature,
            team=team,
            endpoint=endpoint,
            prompt_version=prompt_version,
            environment=environment,
            tags=tags,
        ),
    )


def current_call() -> TrackedCall | None:
    """The call being tracked around the running code, if any (inside `track` or `observe`)."""
    return _current.get()
