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
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import TracebackType
from typing import Any

import msgspec

from aivitals.attribution import Attribution
from aivitals.content import CallContent
from aivitals.draft import NO_USAGE, CallDraft
from aivitals.extract.any_response import content_of_response
from aivitals.finish import finish_reason_from_anthropic
from aivitals.model import (
    CacheLevel,
    CacheResult,
    Call,
    InvalidRecord,
    Operation,
    Status,
    new_id,
)
from aivitals.salvage import salvage_call
from aivitals.sdk import attributions
from aivitals.sdk.attributions import over
from aivitals.sdk.context import _attribution, _last_call_id
from aivitals.sdk.handoff import handoff
from aivitals.sdk.runtime import Runtime, get_runtime
from aivitals.sdk.spans import (
    CallSpan,
    end_call_span,
    server_of,
    start_call_span,
    tracing_possible,
)
from aivitals.usage import TokenUsage, usage_from_response

log = logging.getLogger("aivitals.sdk")

_current: ContextVar[TrackedCall | None] = ContextVar("aivitals_current_call", default=None)
_EMPTY = _attribution.get()
_NEVER = datetime.fromtimestamp(0, UTC)
_clock = time.perf_counter
_wall_clock = time.time_ns


class TrackedCall(CallDraft):
    """The handle of a call in progress: tell it what happened; it is recorded when the block ends.

    Every method is safe to call from your code: none raises, and values that make no sense are
    logged and dropped rather than breaking the call being observed.
    """

    # No __slots__ here, and every field that starts the same for every call is a class-level
    # default: a new handle then sets only the few that differ (an instance attribute shadows
    # the default on first write). `CallDraft.__init__` sets all of its 27 slots, half the cost
    # of a handle on the caller's thread; tests/test_sdk_handoff.py checks both start alike.
    attribution = _EMPTY
    trace_id: str | None = None
    span_id: str | None = None
    parent_span_id: str | None = None
    ttft_ms: float | None = None
    queue_ms: float | None = None
    response_model: str | None = None
    usage = NO_USAGE
    tokens_estimated = False
    status: Status = "ok"
    error_type: Any = None
    error_message: str | None = None
    http_status: int | None = None
    finish_reason: str | None = None
    cache: CacheResult | None = None
    cache_level: CacheLevel | None = None
    saved_usd: Decimal | None = None
    context_window: int | None = None
    endpoint: str | None = None
    service_tier: str | None = None
    quantization: str | None = None
    priced: dict[str, Any] | None = None

    error: BaseException | None = None
    # What the call said and answered, built later on the quality worker (`wants_content`).
    content_source: Callable[[], CallContent | None] | None = None
    _recorded: Call | None = None
    # Handed over and not recorded yet: the worker, or a reader of `recorded`, records it.
    _pending = False
    _latency_ms = 0.0
    _outer: Attribution | None = None  # the context's attribution where the call ended
    _who: Attribution | None = None
    _only_if_alone = False
    _children = 0
    _runtime: Runtime | None = None
    _t0 = 0.0
    # The wall clock at the start as `time.time_ns()` (a third of `datetime.now`'s cost on the
    # caller's thread); `started_at` makes the datetime from it when read, on the worker.
    _wall_ns = 0
    _started_at: datetime | None = None
    _started = False
    _finished = False
    _tokens: tuple[Token[Attribution], Token[TrackedCall | None]] | None = None
    # Counts the call out of flight (`Recorder.in_flight`), once it was counted in.
    _ended: Callable[[], object] | None = None
    _span: CallSpan | None = None
    # A scope's span name (`observe`'s function) until it turns out to be the call.
    _label: str | None = None

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
        self.id = new_id()
        self.provider = provider
        self.model = model
        self.operation = operation
        self._extra = attribution or _EMPTY
        if only_if_alone:
            self._only_if_alone = True
        if runtime is not None:
            self._runtime = runtime

    @property
    def started_at(self) -> datetime:
        """When the call started (the Unix epoch until it does)."""
        at = self._started_at
        if at is None:
            # Exact to the microsecond, as `datetime.now` is: no float on the way.
            at = _NEVER + timedelta(microseconds=self._wall_ns // 1000)
        return at

    @started_at.setter
    def started_at(self, value: datetime) -> None:
        self._started_at = value

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
            if usage is None and self.usage is NO_USAGE:
                # Nothing said before: the keywords are the whole usage (the common case, and
                # a third of the cost of the general one below).
                self.usage = TokenUsage(
                    input_tokens=input_tokens or 0,
                    output_tokens=output_tokens or 0,
                    cached_input_tokens=cached_input_tokens or 0,
                    cache_write_tokens=cache_write_tokens or 0,
                    reasoning_tokens=reasoning_tokens or 0,
                )
                self.tokens_estimated = estimated
                return
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
        self._wall_ns = _wall_clock()
        self._t0 = _clock()
        try:
            runtime = self._runtime
            if runtime is None:
                runtime = self._runtime = get_runtime()
            if not runtime.enabled:
                return
            model = self.model
            if model:
                started, self._ended = runtime.recorder.in_flight(
                    self.provider or self._provider(runtime), model
                )
                started()
            if tracing_possible():
                self._span = start_call_span(
                    self, label=self._label if self._only_if_alone else None
                )
        except Exception:
            log.exception("aivitals: could not start tracking a call")

    @property
    def recorded(self) -> Call | None:
        """The call as recorded (priced, validated), or None: not ended yet, or nothing to record.

        The call is recorded off your thread once it ends; reading this records it here and now
        if that has not happened yet (once: the worker then skips it).
        """
        if self._pending:
            with handoff.lock:
                self.materialise()
        return self._recorded

    def finish(self, error: BaseException | None = None) -> Call | None:
        """End the call now and record it (once); returns the recorded call.

        `end` does the same without waiting for the record.
        """
        self.end(error)
        return self.recorded

    def end(self, error: BaseException | None = None) -> None:
        """End the call now (once); it is recorded soon, off this thread (see `recorded`)."""
        if self._finished:
            return
        self._finished = True
        # Only what must happen on the caller's thread: the clocks, the in-flight gauge, what
        # the context holds (attribution, the open span, the last call id). The rest (building,
        # validating, pricing, the sinks) is the hand-off's worker's (`materialise`).
        try:
            if self._started:
                self._latency_ms = (_clock() - self._t0) * 1000.0
            else:  # finished without a start: an instant, now
                self._wall_ns = _wall_clock()
            runtime = self._runtime
            if runtime is None:
                runtime = self._runtime = get_runtime()
            ended = self._ended
            if ended is not None:
                ended()
            if error is not None:
                self.error = error
            span = self._span
            if (self._only_if_alone and self._children) or not runtime.enabled or not self.model:
                if span is not None:
                    # `observe` that recorded nothing was a scope (its calls have their own spans).
                    end_call_span(span, self, None, scope=self._only_if_alone)
                return
            if self._who is None:
                self._outer = _attribution.get()
            _last_call_id.set(self.id)
            parent = _current.get()
            if parent is not None and parent is not self:
                # Counted when handed over: the parent's own end (an `observe` scope) reads it.
                parent._children += 1
            # With a span, recorded here and now: the span ends at its true end with the recorded
            # call's attributes, before the application may shut its provider down. Without
            # room in the hand-off, here too (back-pressure): never dropped, never unbounded.
            if span is not None:
                self._record()
                return
            if handoff.has_room():
                self._pending = True
                handoff.put(self)
            else:
                self._record()  # never queued, so nobody else can claim it: no lock to wait on
        except Exception:
            log.exception("aivitals: could not record call %s", self.id)

    def materialise(self) -> None:
        """Record the call handed over, once; whoever calls this holds the hand-off's lock."""
        if self._pending:
            self._pending = False
            self._record()

    def _record(self) -> None:
        """Build, validate, price and record the ended call, and end its span."""
        recorded = None
        try:
            runtime = self._runtime or get_runtime()
            call = self._build(runtime, self._latency_ms)
            if call is not None:
                recorded = self._recorded = runtime.recorder.record(call, self.content_source)
        except Exception:
            log.exception("aivitals: could not record call %s", self.id)
        if self._span is not None:
            # `observe` that recorded nothing was a scope (its calls have their own spans).
            end_call_span(self._span, self, recorded, scope=self._only_if_alone and not recorded)

    def _provider(self, runtime: Runtime) -> str:
        if not self.provider:
            found = runtime.recorder.pricer.provider_for(self.model) if self.model else None
            self.provider = found or "unknown"
        return self.provider

    def _attribution(self) -> Attribution:
        who = self._who
        if who is None:
            runtime = self._runtime
            if runtime is None:
                runtime = self._runtime = get_runtime()
            outer = self._outer if self._outer is not None else _attribution.get()
            base = runtime.defaults if outer is _EMPTY else over(runtime.defaults, outer)
            # Nothing around the call and no defaults (the common case): its own values, without
            # a call of `over` to find that out.
            who = self._who = self._extra if base is _EMPTY else over(base, self._extra)
        return who

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
        span = self._span
        if span is not None:
            span.attach()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        span = self._span
        if span is not None:
            span.detach()
        tokens = self._tokens
        if tokens is not None:
            _current.reset(tokens[1])
            _attribution.reset(tokens[0])
            self._tokens = None
        self.end(exc)

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


_EMPTY_ATTRIBUTION = _EMPTY


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
    attribution = attributions.of((user, feature, team, endpoint, prompt_version, environment))
    if tags:
        attribution = attribution.merged(tags=tags)
    return TrackedCall(model=model, provider=provider, operation=operation, attribution=attribution)


def current_call() -> TrackedCall | None:
    """The call being tracked around the running code, if any (inside `track` or `observe`)."""
    return _current.get()
