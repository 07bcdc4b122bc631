"""The one record every source builds and every sink consumes: `Call`, and its `Score`.

Token conventions (the same as OpenTelemetry's GenAI conventions, whatever the provider):

- ``input_tokens`` is the *total* input, including cached reads and cache writes. Anthropic reports
  cached tokens outside ``input_tokens``; `aivitals.usage` normalises that before a `Call` is built.
- ``output_tokens`` is the total output, including ``reasoning_tokens``.

A `Call` validates itself on construction and raises `InvalidRecord` naming the field at fault.
The limits (`aivitals.bounds`) are the same for every source: a value no source can sanely send,
or that the store's columns and sums cannot hold, is refused here, before any sink sees it.

>>> Call(provider="openai", model="gpt-4o-mini", latency_ms=1e16)
Traceback (most recent call last):
...
aivitals.model.InvalidRecord: latency_ms: must be a finite number from 0 to 86,400,000 ms (one day), got 1e+16
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from decimal import Decimal
from typing import Literal, get_args

import msgspec
import uuid_utils

from aivitals.bounds import (
    CALL_TEXT_CHARS,
    EARLIEST_TIME,
    MAX_AHEAD,
    MAX_DURATION_MS,
    MAX_MONEY_CHARS,
    MAX_SCORE_MAGNITUDE,
    MAX_TAG_KEY_CHARS,
    MAX_TAG_VALUE_CHARS,
    MAX_TAGS,
    MAX_TOKENS,
    MAX_TOOL_USES,
    MAX_USD,
    OUTCOME_TEXT_CHARS,
    SCORE_TEXT_CHARS,
)
from aivitals.usage import TOOL_USE_KINDS

Status = Literal["ok", "error", "cancelled"]
"""``cancelled``: the caller went away (closed a stream early, disconnected) before the end."""

ErrorType = Literal[
    "rate_limit",
    "context_window_exceeded",
    "content_filter",
    "timeout",
    "invalid_response",
    "provider_down",
    "auth",
    "bad_request",
    "other",
]
Operation = Literal["chat", "text_completion", "embeddings", "other"]
"""Names follow OpenTelemetry's ``gen_ai.operation.name``."""

CacheResult = Literal["hit", "miss", "bypass"]
CacheLevel = Literal["exact", "semantic"]

STATUSES: frozenset[str] = frozenset(get_args(Status))
ERROR_TYPES: frozenset[str] = frozenset(get_args(ErrorType))
OPERATIONS: frozenset[str] = frozenset(get_args(Operation))
CACHE_RESULTS: frozenset[str] = frozenset(get_args(CacheResult))
CACHE_LEVELS: frozenset[str] = frozenset(get_args(CacheLevel))

_TOKEN_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cache_write_1h_tokens",
)
_COST_FIELDS = ("cost_usd", "input_cost_usd", "output_cost_usd", "saved_usd")
_REQUIRED_TEXT = frozenset({"id", "provider", "model"})
_OPTIONAL_CALL_TEXT = tuple(name for name in CALL_TEXT_CHARS if name not in _REQUIRED_TEXT)
_ZERO = Decimal(0)

# Bound once here: the valid-case check below reads module constants, not the mappings.
_ID = CALL_TEXT_CHARS["id"]
_TRACE = CALL_TEXT_CHARS["trace_id"]
_SPAN = CALL_TEXT_CHARS["span_id"]
_PROVIDER = CALL_TEXT_CHARS["provider"]
_MODEL = CALL_TEXT_CHARS["model"]
_ERROR_MESSAGE = CALL_TEXT_CHARS["error_message"]
_FINISH = CALL_TEXT_CHARS["finish_reason"]
_ENVIRONMENT = CALL_TEXT_CHARS["environment"]
_TIER = CALL_TEXT_CHARS["service_tier"]
_QUANTIZATION = CALL_TEXT_CHARS["quantization"]
_NAME = 200  # response_model, price_source, user, feature, team, endpoint, prompt_version


class InvalidRecord(ValueError):
    """A `Call` or `Score` was built with a value that cannot be right. The message names the field."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


def new_id() -> str:
    """A new time-ordered id (UUIDv7): ids sort by creation time, so stores can index them cheaply."""
    return str(uuid_utils.uuid7())


def utc_now() -> datetime:
    return datetime.now(UTC)


class _Horizon:
    """The latest acceptable time (now plus `MAX_AHEAD`), read without a clock in the valid case.

    It only grows stale by being too early, so a stale value can make the quick check fail but
    never pass a time it should refuse; the field-by-field check then refreshes it and decides.
    """

    __slots__ = ("latest",)

    def __init__(self) -> None:
        self.latest = self.refresh()

    def refresh(self) -> datetime:
        self.latest = utc_now() + MAX_AHEAD
        return self.latest


_HORIZON = _Horizon()


class Call(msgspec.Struct, frozen=True, kw_only=True):
    """One model call, as every sink sees it.

    >>> call = Call(provider="openai", model="gpt-4o-mini", latency_ms=812.5,
    ...             input_tokens=1200, cached_input_tokens=1024, output_tokens=80)
    >>> call.status, call.cost_usd is None
    ('ok', True)

    ``cost_usd`` stays ``None`` until the recorder prices the call, and stays ``None`` for good when
    the model has no known price: a missing price is never replaced by a guess. A response-cache
    hit costs nothing (``cost_usd`` 0) and carries in ``saved_usd`` what the answer it replayed
    cost.
    """

    provider: str
    model: str
    latency_ms: float
    id: str = msgspec.field(default_factory=new_id)
    trace_id: str | None = None
    span_id: str | None = None
    parent_span_id: str | None = None
    started_at: datetime = msgspec.field(default_factory=utc_now)
    ttft_ms: float | None = None
    queue_ms: float | None = None
    response_model: str | None = None
    operation: Operation = "chat"
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cache_write_1h_tokens: int = 0
    server_tool_uses: dict[str, int] = msgspec.field(default_factory=dict)
    tokens_estimated: bool = False
    cost_usd: Decimal | None = None
    input_cost_usd: Decimal | None = None
    output_cost_usd: Decimal | None = None
    saved_usd: Decimal | None = None
    price_source: str | None = None
    service_tier: str | None = None
    status: Status = "ok"
    error_type: ErrorType | None = None
    error_message: str | None = None
    http_status: int | None = None
    finish_reason: str | None = None
    cache: CacheResult | None = None
    cache_level: CacheLevel | None = None
    context_window: int | None = None
    user: str | None = None
    feature: str | None = None
    team: str | None = None
    endpoint: str | None = None
    prompt_version: str | None = None
    environment: str | None = None
    quantization: str | None = None
    tags: dict[str, str] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        # One cheap expression covers the common, valid case (this runs on the caller's thread
        # for every call); only when it fails do the field-by-field checks find what is wrong,
        # or find nothing (non-ASCII text and a stale `_HORIZON` take that way and pass).
        # Text: ``isascii`` is O(1) in CPython and rules out lone surrogates; NUL is refused
        # because PostgreSQL refuses it in every text column.
        if not (
            type(self.provider) is str
            and 0 < len(self.provider) <= _PROVIDER
            and "\x00" not in self.provider
            and self.provider.isascii()
            and type(self.model) is str
            and 0 < len(self.model) <= _MODEL
            and "\x00" not in self.model
            and self.model.isascii()
            and type(self.id) is str
            and 0 < len(self.id) <= _ID
            and self.id.isascii()
            and "\x00" not in self.id
            and type(self.latency_ms) in (float, int)
            and 0 <= self.latency_ms <= MAX_DURATION_MS
            and (
                self.ttft_ms is None
                or (type(self.ttft_ms) in (float, int) and 0 <= self.ttft_ms <= self.latency_ms)
            )
            and (
                self.queue_ms is None
                or (type(self.queue_ms) in (float, int) and 0 <= self.queue_ms <= MAX_DURATION_MS)
            )
            and type(self.input_tokens) is int
            and type(self.output_tokens) is int
            and type(self.cached_input_tokens) is int
            and type(self.cache_write_tokens) is int
            and type(self.reasoning_tokens) is int
            and 0 <= self.cached_input_tokens + self.cache_write_tokens <= self.input_tokens
            and self.input_tokens <= MAX_TOKENS
            and self.cached_input_tokens >= 0
            and self.cache_write_tokens >= 0
            and 0 <= self.reasoning_tokens <= self.output_tokens <= MAX_TOKENS
            and type(self.cache_write_1h_tokens) is int
            and 0 <= self.cache_write_1h_tokens <= self.cache_write_tokens
            and type(self.server_tool_uses) is dict
            and (not self.server_tool_uses or _tool_uses_ok(self.server_tool_uses))
            and type(self.tokens_estimated) is bool
            and self.status in STATUSES
            and self.operation in OPERATIONS
            and (self.error_type is None) == (self.status != "error")
            and (self.error_type is None or self.error_type in ERROR_TYPES)
            and (
                self.cost_usd is None
                or (
                    type(self.cost_usd) is Decimal
                    and self.cost_usd.is_finite()
                    and _ZERO <= self.cost_usd <= MAX_USD
                    and len(str(self.cost_usd)) <= MAX_MONEY_CHARS
                )
            )
            and (
                self.input_cost_usd is None
                or (
                    type(self.input_cost_usd) is Decimal
                    and self.input_cost_usd.is_finite()
                    and _ZERO <= self.input_cost_usd <= MAX_USD
                    and len(str(self.input_cost_usd)) <= MAX_MONEY_CHARS
                )
            )
            and (
                self.output_cost_usd is None
                or (
                    type(self.output_cost_usd) is Decimal
                    and self.output_cost_usd.is_finite()
                    and _ZERO <= self.output_cost_usd <= MAX_USD
                    and len(str(self.output_cost_usd)) <= MAX_MONEY_CHARS
                )
            )
            and (self.saved_usd is None or _money_problem(self.saved_usd) is None)
            and (self.cache is None or self.cache in CACHE_RESULTS)
            and (self.cache_level is None or self.cache_level in CACHE_LEVELS)
            and (
                self.context_window is None
                or (type(self.context_window) is int and 0 < self.context_window <= MAX_TOKENS)
            )
            and (
                self.http_status is None
                or (type(self.http_status) is int and 100 <= self.http_status <= 599)
            )
            and type(self.started_at) is datetime
            and self.started_at.tzinfo is not None
            and EARLIEST_TIME <= self.started_at <= _HORIZON.latest
            and (
                self.trace_id is None
                or (
                    type(self.trace_id) is str
                    and len(self.trace_id) <= _TRACE
                    and self.trace_id.isascii()
                    and "\x00" not in self.trace_id
                )
            )
            and (
                self.span_id is None
                or (
                    type(self.span_id) is str
                    and len(self.span_id) <= _SPAN
                    and self.span_id.isascii()
                    and "\x00" not in self.span_id
                )
            )
            and (
                self.parent_span_id is None
                or (
                    type(self.parent_span_id) is str
                    and len(self.parent_span_id) <= _SPAN
                    and self.parent_span_id.isascii()
                    and "\x00" not in self.parent_span_id
                )
            )
            and (
                self.response_model is None
                or (
                    type(self.response_model) is str
                    and len(self.response_model) <= _NAME
                    and self.response_model.isascii()
                    and "\x00" not in self.response_model
                )
            )
            and (
                self.price_source is None
                or (
                    type(self.price_source) is str
                    and len(self.price_source) <= _NAME
                    and self.price_source.isascii()
                    and "\x00" not in self.price_source
                )
            )
            and (
                self.error_message is None
                or (
                    type(self.error_message) is str
                    and len(self.error_message) <= _ERROR_MESSAGE
                    and self.error_message.isascii()
                    and "\x00" not in self.error_message
                )
            )
            and (
                self.finish_reason is None
                or (
                    type(self.finish_reason) is str
                    and len(self.finish_reason) <= _FINISH
                    and self.finish_reason.isascii()
                    and "\x00" not in self.finish_reason
                )
            )
            and (
                self.user is None
                or (
                    type(self.user) is str
                    and len(self.user) <= _NAME
                    and self.user.isascii()
                    and "\x00" not in self.user
                )
            )
            and (
                self.feature is None
                or (
                    type(self.feature) is str
                    and len(self.feature) <= _NAME
                    and self.feature.isascii()
                    and "\x00" not in self.feature
                )
            )
            and (
                self.team is None
                or (
                    type(self.team) is str
                    and len(self.team) <= _NAME
                    and self.team.isascii()
                    and "\x00" not in self.team
                )
            )
            and (
                self.endpoint is None
                or (
                    type(self.endpoint) is str
                    and len(self.endpoint) <= _NAME
                    and self.endpoint.isascii()
                    and "\x00" not in self.endpoint
                )
            )
            and (
                self.prompt_version is None
                or (
                    type(self.prompt_version) is str
                    and len(self.prompt_version) <= _NAME
                    and self.prompt_version.isascii()
                    and "\x00" not in self.prompt_version
                )
            )
            and (
                self.environment is None
                or (
                    type(self.environment) is str
                    and len(self.environment) <= _ENVIRONMENT
                    and self.environment.isascii()
                    and "\x00" not in self.environment
                )
            )
            and (
                self.service_tier is None
                or (
                    type(self.service_tier) is str
                    and 0 < len(self.service_tier) <= _TIER
                    and self.service_tier.isascii()
                    and "\x00" not in self.service_tier
                )
            )
            and (
                self.quantization is None
                or (
                    type(self.quantization) is str
                    and 0 < len(self.quantization) <= _QUANTIZATION
                    and self.quantization.isascii()
                    and "\x00" not in self.quantization
                )
            )
            and type(self.tags) is dict
            and (not self.tags or _tags_ok(self.tags))
        ):
            self._check_fields()

    def _check_fields(self) -> None:
        _check_text("id", self.id, _ID, required=True)
        _check_text("provider", self.provider, _PROVIDER, required=True)
        _check_text("model", self.model, _MODEL, required=True)
        _check_duration("latency_ms", self.latency_ms)
        if self.ttft_ms is not None:
            _check_duration("ttft_ms", self.ttft_ms)
            if self.ttft_ms > self.latency_ms:
                raise InvalidRecord(
                    "ttft_ms",
                    f"{self.ttft_ms!r} is longer than the whole call (latency_ms "
                    f"{self.latency_ms!r}); the time to first token is part of the latency",
                )
        if self.queue_ms is not None:
            _check_duration("queue_ms", self.queue_ms)
        for name in _TOKEN_FIELDS:
            _check_count(name, getattr(self, name))
        if self.cached_input_tokens + self.cache_write_tokens > self.input_tokens:
            raise InvalidRecord(
                "cached_input_tokens",
                f"cached reads ({self.cached_input_tokens}) plus cache writes "
                f"({self.cache_write_tokens}) exceed input_tokens ({self.input_tokens}); "
                "input_tokens is the total input including cached tokens",
            )
        if self.reasoning_tokens > self.output_tokens:
            raise InvalidRecord(
                "reasoning_tokens",
                f"{self.reasoning_tokens} exceeds output_tokens ({self.output_tokens}); "
                "output_tokens is the total output including reasoning",
            )
        if self.cache_write_1h_tokens > self.cache_write_tokens:
            raise InvalidRecord(
                "cache_write_1h_tokens",
                f"{self.cache_write_1h_tokens} exceeds cache_write_tokens "
                f"({self.cache_write_tokens}); cache_write_tokens is every cache write, "
                "1-hour ones included",
            )
        problem = tool_uses_problem(self.server_tool_uses)
        if problem is not None:
            raise InvalidRecord("server_tool_uses", problem)
        if type(self.tokens_estimated) is not bool:
            raise InvalidRecord(
                "tokens_estimated", f"must be true or false, got {_kind(self.tokens_estimated)}"
            )
        for name in _COST_FIELDS:
            problem = _money_problem(getattr(self, name))
            if problem is not None:
                raise InvalidRecord(name, problem)
        _check_choice("operation", self.operation, OPERATIONS)
        _check_choice("status", self.status, STATUSES)
        if self.error_type is not None:
            _check_choice("error_type", self.error_type, ERROR_TYPES)
        if self.status == "error" and self.error_type is None:
            raise InvalidRecord(
                "error_type", "a call with status 'error' needs one ('other' if unknown)"
            )
        if self.status != "error" and self.error_type is not None:
            raise InvalidRecord(
                "error_type",
                f"must be empty when status is {self.status!r}, got {self.error_type!r}",
            )
        if self.cache is not None:
            _check_choice("cache", self.cache, CACHE_RESULTS)
        if self.cache_level is not None:
            _check_choice("cache_level", self.cache_level, CACHE_LEVELS)
        if self.context_window is not None and (
            type(self.context_window) is not int or not 0 < self.context_window <= MAX_TOKENS
        ):
            raise InvalidRecord(
                "context_window",
                f"must be a whole number from 1 to {MAX_TOKENS:,}, got {_kind(self.context_window)}",
            )
        if self.http_status is not None and (
            type(self.http_status) is not int or not 100 <= self.http_status <= 599
        ):
            raise InvalidRecord(
                "http_status", f"must be an HTTP status code, got {_kind(self.http_status)}"
            )
        _check_time("started_at", self.started_at)
        for name in _OPTIONAL_CALL_TEXT:
            _check_text(name, getattr(self, name), CALL_TEXT_CHARS[name])
        for name in ("service_tier", "quantization"):
            if getattr(self, name) == "":
                raise InvalidRecord(name, "must be a non-empty string or null")
        problem = tags_problem(self.tags)
        if problem is not None:
            raise InvalidRecord("tags", problem)

    @property
    def priced(self) -> bool:
        """True when the call has a cost; False when its model has no known price."""
        return self.cost_usd is not None

    @property
    def context_utilisation(self) -> float | None:
        """Input tokens as a share of the model's context window, when the window is known."""
        if not self.context_window:
            return None
        return self.input_tokens / self.context_window

    @property
    def output_tokens_per_second(self) -> float | None:
        """Generation speed: output tokens over the time after the first token (or the whole call)."""
        if self.output_tokens == 0 or self.status != "ok":
            return None
        generating_ms = self.latency_ms - (self.ttft_ms or 0.0)
        if generating_ms <= 0:
            return None
        return self.output_tokens * 1000.0 / generating_ms


class Score(msgspec.Struct, frozen=True, kw_only=True):
    """A quality score for a call; it may arrive with the call or hours later, by ``call_id``.

    >>> Score(call_id="0192...", name="faithfulness", value=0.92).value
    0.92

    ``min_value`` and ``max_value`` declare the score's range (0 to 1 unless said otherwise); a value
    outside it, or NaN, is refused. ``model`` and ``feature`` are optional hints that let metrics
    label a score that arrives without its call.
    """

    call_id: str
    name: str
    value: float
    id: str = msgspec.field(default_factory=new_id)
    source: str = "api"
    comment: str | None = None
    min_value: float = 0.0
    max_value: float = 1.0
    created_at: datetime = msgspec.field(default_factory=utc_now)
    model: str | None = None
    feature: str | None = None

    def __post_init__(self) -> None:
        # As `Call`'s: one cheap expression for the common, valid case (the evaluators make
        # several scores a call); only when it fails do the checks below find what is wrong.
        if not (
            type(self.call_id) is str
            and 0 < len(self.call_id) <= _SCORE_CALL_ID
            and self.call_id.isascii()
            and "\x00" not in self.call_id
            and type(self.name) is str
            and 0 < len(self.name) <= _SCORE_NAME
            and self.name.isascii()
            and "\x00" not in self.name
            and type(self.id) is str
            and 0 < len(self.id) <= _SCORE_ID
            and self.id.isascii()
            and "\x00" not in self.id
            and type(self.source) is str
            and 0 < len(self.source) <= _SCORE_SOURCE
            and self.source.isascii()
            and "\x00" not in self.source
            and (
                self.comment is None
                or (
                    type(self.comment) is str
                    and len(self.comment) <= _SCORE_COMMENT
                    and self.comment.isascii()
                    and "\x00" not in self.comment
                )
            )
            and (
                self.model is None
                or (
                    type(self.model) is str
                    and len(self.model) <= _SCORE_MODEL
                    and self.model.isascii()
                    and "\x00" not in self.model
                )
            )
            and (
                self.feature is None
                or (
                    type(self.feature) is str
                    and len(self.feature) <= _SCORE_FEATURE
                    and self.feature.isascii()
                    and "\x00" not in self.feature
                )
            )
            and type(self.value) in (float, int)
            and type(self.min_value) in (float, int)
            and type(self.max_value) in (float, int)
            # Within the bounds and ordered: no NaN or infinity passes these comparisons.
            and -MAX_SCORE_MAGNITUDE <= self.min_value <= self.value <= self.max_value
            and self.min_value < self.max_value <= MAX_SCORE_MAGNITUDE
            and type(self.created_at) is datetime
            and self.created_at.utcoffset() is not None
            and EARLIEST_TIME <= self.created_at <= _HORIZON.latest
        ):
            self._check_fields()

    def _check_fields(self) -> None:
        for name in _SCORE_TEXT:
            _check_text(
                name,
                getattr(self, name),
                SCORE_TEXT_CHARS[name],
                required=name in _REQUIRED_SCORE_TEXT,
            )
        for name in ("value", "min_value", "max_value"):
            number = getattr(self, name)
            if not _is_number(number) or not -MAX_SCORE_MAGNITUDE <= number <= MAX_SCORE_MAGNITUDE:
                raise InvalidRecord(
                    name,
                    f"must be a finite number from {-MAX_SCORE_MAGNITUDE:,.0f} to "
                    f"{MAX_SCORE_MAGNITUDE:,.0f}, got {_kind(number)}",
                )
        if self.min_value >= self.max_value:
            raise InvalidRecord(
                "max_value", f"must be above min_value ({self.min_value}), got {self.max_value}"
            )
        if not self.min_value <= self.value <= self.max_value:
            raise InvalidRecord(
                "value",
                f"{self.value} is outside the declared range [{self.min_value}, {self.max_value}]",
            )
        _check_time("created_at", self.created_at)

    @property
    def normalised(self) -> float:
        """The value mapped onto 0..1, so scores with different ranges can be averaged."""
        return (self.value - self.min_value) / (self.max_value - self.min_value)


_SCORE_TEXT = tuple(SCORE_TEXT_CHARS)
_SCORE_ID = SCORE_TEXT_CHARS["id"]
_SCORE_CALL_ID = SCORE_TEXT_CHARS["call_id"]
_SCORE_NAME = SCORE_TEXT_CHARS["name"]
_SCORE_SOURCE = SCORE_TEXT_CHARS["source"]
_SCORE_COMMENT = SCORE_TEXT_CHARS["comment"]
_SCORE_MODEL = SCORE_TEXT_CHARS["model"]
_SCORE_FEATURE = SCORE_TEXT_CHARS["feature"]
_REQUIRED_SCORE_TEXT = frozenset({"id", "call_id", "name", "source"})

OutcomeKind = Literal["class", "number"]
Label = str | bool | int | float
"""What a prediction or a truth can be: a class label (text or bool), or a number."""


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    """What a call predicted and what turned out to be true: a labelled outcome, by ``call_id``.

    For calls used as classifiers or scorers, whose truth arrives later (from users, reviewers).
    Build one with `Outcome.of`, which reads the kind from the values:

    >>> Outcome.of("0192...", predicted="spam", actual="ham").kind
    'class'
    >>> Outcome.of("0192...", predicted=0.83, actual=True).probability  # a probability of True
    0.83
    >>> Outcome.of("0192...", predicted=4.5, actual=4.0).kind
    'number'

    ``kind`` ``class``: ``predicted`` and ``actual`` are labels, ``probability`` (optional) the
    model's confidence in its predicted label. ``number``: ``predicted_value`` and
    ``actual_value``. ``name`` is the task (the label set), so one call can have outcomes for
    several. ``model`` and ``feature`` are hints, as on a `Score`.
    """

    call_id: str
    kind: OutcomeKind
    predicted: str | None = None
    actual: str | None = None
    probability: float | None = None
    predicted_value: float | None = None
    actual_value: float | None = None
    name: str = "default"
    id: str = msgspec.field(default_factory=new_id)
    source: str = "api"
    created_at: datetime = msgspec.field(default_factory=utc_now)
    model: str | None = None
    feature: str | None = None

    @classmethod
    def of(
        cls,
        call_id: str,
        *,
        predicted: Label,
        actual: Label,
        probability: float | None = None,
        **fields: object,
    ) -> Outcome:
        """An outcome from what was predicted and what was true; raises `InvalidRecord`.

        Two labels (text or bool; a bool is the label ``true`` or ``false``) make a ``class``
        outcome; two numbers a ``number`` one. A number predicted for a bool truth is the
        probability of ``True``: the predicted label is the likelier one, and ``probability``
        its probability. ``fields`` are the other fields (``name``, ``source``, ``model``, ...).
        """
        if _is_label(predicted) and _is_label(actual):
            return cls(
                call_id=call_id,
                kind="class",
                predicted=_label(predicted),
                actual=_label(actual),
                probability=probability,
                **fields,  # type: ignore[arg-type]  # checked by __post_init__
            )
        if _is_number(predicted) and isinstance(actual, bool):
            if probability is not None:
                raise InvalidRecord(
                    "probability", "give it with a predicted label, not a predicted probability"
                )
            chance = float(predicted)
            if not 0.0 <= chance <= 1.0:
                raise InvalidRecord(
                    "predicted",
                    f"a number predicted for a true/false actual is the probability of true: "
                    f"from 0 to 1, got {chance}",
                )
            yes = chance >= 0.5
            return cls(
                call_id=call_id,
                kind="class",
                predicted=_label(yes),
                actual=_label(actual),
                probability=chance if yes else 1.0 - chance,
                **fields,  # type: ignore[arg-type]  # checked by __post_init__
            )
        if _is_number(predicted) and _is_number(actual):
            if probability is not None:
                raise InvalidRecord("probability", "is for predicted labels, not numbers")
            return cls(
                call_id=call_id,
                kind="number",
                predicted_value=float(predicted),
                actual_value=float(actual),
                **fields,  # type: ignore[arg-type]  # checked by __post_init__
            )
        raise InvalidRecord(
            "actual",
            f"must be of the kind of predicted: two labels (text or true/false) or two finite "
            f"numbers, got predicted {_kind(predicted)} and actual {_kind(actual)}",
        )

    def __post_init__(self) -> None:
        for name, limit in OUTCOME_TEXT_CHARS.items():
            _check_text(name, getattr(self, name), limit, required=name in _REQUIRED_OUTCOME_TEXT)
        if self.kind == "class":
            _check_text("predicted", self.predicted, OUTCOME_TEXT_CHARS["predicted"], required=True)
            _check_text("actual", self.actual, OUTCOME_TEXT_CHARS["actual"], required=True)
            if self.probability is not None and not (
                _is_number(self.probability) and 0.0 <= self.probability <= 1.0
            ):
                raise InvalidRecord(
                    "probability", f"must be a number from 0 to 1, got {_kind(self.probability)}"
                )
            extra: tuple[str, ...] = ("predicted_value", "actual_value")
        elif self.kind == "number":
            for name in ("predicted_value", "actual_value"):
                number = getattr(self, name)
                if not _is_number(number) or abs(number) > MAX_SCORE_MAGNITUDE:
                    raise InvalidRecord(
                        name,
                        f"must be a finite number from {-MAX_SCORE_MAGNITUDE:,.0f} to "
                        f"{MAX_SCORE_MAGNITUDE:,.0f}, got {_kind(number)}",
                    )
            extra = ("predicted", "actual", "probability")
        else:
            raise InvalidRecord("kind", f"must be class or number, got {_kind(self.kind)}")
        for name in extra:
            if getattr(self, name) is not None:
                raise InvalidRecord(name, f"must be absent from a {self.kind} outcome")
        _check_time("created_at", self.created_at)


_REQUIRED_OUTCOME_TEXT = frozenset({"id", "call_id", "name", "source"})


def _is_label(value: object) -> bool:
    return isinstance(value, str | bool)


def _label(value: str | bool | int | float) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _is_number(value: object) -> bool:
    return (
        type(value) in (int, float) and math.isfinite(value)  # type: ignore[arg-type]  # narrowed by type()
    )


def _kind(value: object) -> str:
    """A value for a message: numbers as themselves, anything else by its type (never echoed
    whole: it may be large, or hold what should not be logged)."""
    if type(value) in (int, float, bool, Decimal) or value is None:
        text = repr(value)
        return text if len(text) <= 60 else f"{text[:57]}..."
    return f"a {type(value).__name__}"


def clean_text(text: str) -> bool:
    """True when ``text`` can be stored as-is: valid UTF-8 (no lone surrogate) and no NUL.

    >>> clean_text("naïve"), clean_text("bad \\ud800"), clean_text("a\\x00b")
    (True, False, False)
    """
    if "\x00" in text:
        return False
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_text(field: str, value: object, limit: int, *, required: bool = False) -> None:
    if value is None and not required:
        return
    if not isinstance(value, str) or (required and not value):
        raise InvalidRecord(field, f"must be a non-empty string, got {_kind(value)}")
    if len(value) > limit:
        raise InvalidRecord(field, f"must be at most {limit:,} characters, got {len(value):,}")
    if not clean_text(value):
        raise InvalidRecord(
            field, "must be valid UTF-8 text: no lone surrogate (\\ud800-\\udfff) and no NUL"
        )


def _check_duration(field: str, value: object) -> None:
    if not _is_number(value) or not 0 <= value <= MAX_DURATION_MS:  # type: ignore[operator]  # _is_number narrowed it
        raise InvalidRecord(
            field,
            f"must be a finite number from 0 to {MAX_DURATION_MS:,} ms (one day), got {_kind(value)}",
        )


def _check_count(field: str, value: object) -> None:
    if type(value) is not int or not 0 <= value <= MAX_TOKENS:
        raise InvalidRecord(
            field, f"must be a whole number from 0 to {MAX_TOKENS:,}, got {_kind(value)}"
        )


def _money_problem(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, Decimal) or not value.is_finite() or not _ZERO <= value <= MAX_USD:
        return f"must be a Decimal from 0 to {MAX_USD:,} USD or None, got {_kind(value)}"
    if len(str(value)) > MAX_MONEY_CHARS:
        return f"has more digits than the store keeps ({MAX_MONEY_CHARS} characters as text)"
    return None


def _check_time(field: str, value: object) -> None:
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise InvalidRecord(field, "must be timezone-aware (use datetime.now(UTC))")
    if value < EARLIEST_TIME:
        raise InvalidRecord(
            field, f"must be on or after {EARLIEST_TIME:%Y-%m-%d}, got {value.isoformat()}"
        )
    if value > _HORIZON.latest and value > _HORIZON.refresh():
        raise InvalidRecord(
            field,
            f"{value.isoformat()} is more than {MAX_AHEAD.days} day ahead of now (UTC)",
        )


def _check_choice(field: str, value: object, allowed: frozenset[str]) -> None:
    if not isinstance(value, str) or value not in allowed:
        shown = repr(value[:40]) if isinstance(value, str) else _kind(value)
        raise InvalidRecord(field, f"unknown value {shown}; expected one of {sorted(allowed)}")


def tags_problem(tags: object) -> str | None:
    """What is wrong with a call's tags, or None: at most `MAX_TAGS` of them, each key non-empty
    text and each value text, within their lengths, and `clean_text`. Tags are named by their
    position, never echoed.

    >>> tags_problem({"region": "eu"}) is None, tags_problem({"": "x"})
    (True, 'tag 1: the key must not be empty')
    """
    if not isinstance(tags, dict):
        return f"must be an object of strings, got {_kind(tags)}"
    if len(tags) > MAX_TAGS:
        return f"at most {MAX_TAGS} tags, got {len(tags):,}"
    for position, (key, value) in enumerate(tags.items(), 1):
        if not isinstance(key, str) or not isinstance(value, str):
            return f"tag {position}: keys and values must be strings"
        if not key:
            return f"tag {position}: the key must not be empty"
        if len(key) > MAX_TAG_KEY_CHARS:
            return f"tag {position}: the key is over {MAX_TAG_KEY_CHARS} characters"
        if len(value) > MAX_TAG_VALUE_CHARS:
            return f"tag {position}: the value is over {MAX_TAG_VALUE_CHARS} characters"
        if not (clean_text(key) and clean_text(value)):
            return f"tag {position}: not valid UTF-8 text (a lone surrogate or a NUL)"
    return None


def tool_uses_problem(uses: object) -> str | None:
    """What is wrong with a call's ``server_tool_uses``, or None: an object whose keys are among
    `aivitals.usage.TOOL_USE_KINDS` and whose values are whole counts up to `MAX_TOOL_USES`.

    >>> tool_uses_problem({"web_search": 3}) is None, tool_uses_problem({"web_search": -1})
    (True, 'web_search: must be a whole number from 0 to 100,000, got -1')
    """
    if not isinstance(uses, dict):
        return f"must be an object of counts, got {_kind(uses)}"
    for kind, count in uses.items():
        if not isinstance(kind, str) or kind not in TOOL_USE_KINDS:
            shown = repr(kind[:40]) if isinstance(kind, str) else _kind(kind)
            return f"unknown tool {shown}; expected one of {sorted(TOOL_USE_KINDS)}"
        if type(count) is not int or not 0 <= count <= MAX_TOOL_USES:
            return f"{kind}: must be a whole number from 0 to {MAX_TOOL_USES:,}, got {_kind(count)}"
    return None


def _tool_uses_ok(uses: dict[str, int]) -> bool:
    for kind, count in uses.items():
        if not (kind in TOOL_USE_KINDS and type(count) is int and 0 <= count <= MAX_TOOL_USES):
            return False
    return True


def _tags_ok(tags: dict[str, str]) -> bool:
    if len(tags) > MAX_TAGS:
        return False
    for key, value in tags.items():
        if not (
            type(key) is str
            and type(value) is str
            and 0 < len(key) <= MAX_TAG_KEY_CHARS
            and len(value) <= MAX_TAG_VALUE_CHARS
            and "\x00" not in key
            and "\x00" not in value
            and ((key.isascii() and value.isascii()) or (clean_text(key) and clean_text(value)))
        ):
            return False
    return True
