"""The one record every source builds and every sink consumes: `Call`, and its `Score`.

Token conventions (the same as OpenTelemetry's GenAI conventions, whatever the provider):

- ``input_tokens`` is the *total* input, including cached reads and cache writes. Anthropic reports
  cached tokens outside ``input_tokens``; `aivitals.usage` normalises that before a `Call` is built.
- ``output_tokens`` is the total output, including ``reasoning_tokens``.

A `Call` validates itself on construction and raises `InvalidRecord` naming the field at fault:

>>> Call(provider="openai", model="gpt-4o-mini", latency_ms=-1.0)
Traceback (most recent call last):
...
aivitals.model.InvalidRecord: latency_ms: must be a finite number >= 0, got -1.0
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Literal, get_args

import msgspec
import uuid_utils

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
)
_COST_FIELDS = ("cost_usd", "input_cost_usd", "output_cost_usd", "saved_usd")


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
    tokens_estimated: bool = False
    cost_usd: Decimal | None = None
    input_cost_usd: Decimal | None = None
    output_cost_usd: Decimal | None = None
    saved_usd: Decimal | None = None
    price_source: str | None = None
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
    tags: dict[str, str] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        # One cheap expression covers the common, valid case (this runs on the caller's thread
        # for every call); only when it fails do the field-by-field checks find what is wrong.
        if not (
            type(self.provider) is str
            and self.provider
            and type(self.model) is str
            and self.model
            and type(self.latency_ms) in (float, int)
            and 0 <= self.latency_ms < math.inf
            and type(self.input_tokens) is int
            and type(self.output_tokens) is int
            and type(self.cached_input_tokens) is int
            and type(self.cache_write_tokens) is int
            and type(self.reasoning_tokens) is int
            and 0 <= self.cached_input_tokens + self.cache_write_tokens <= self.input_tokens
            and self.cached_input_tokens >= 0
            and self.cache_write_tokens >= 0
            and 0 <= self.reasoning_tokens <= self.output_tokens
            and self.status in STATUSES
            and self.operation in OPERATIONS
            and (self.error_type is None) == (self.status != "error")
            and (self.error_type is None or self.error_type in ERROR_TYPES)
            and (
                self.ttft_ms is None
                or (type(self.ttft_ms) is float and 0 <= self.ttft_ms < math.inf)
            )
            and self.queue_ms is None
            and _money_ok(self.cost_usd)
            and _money_ok(self.input_cost_usd)
            and _money_ok(self.output_cost_usd)
            and _money_ok(self.saved_usd)
            and (self.cache is None or self.cache in CACHE_RESULTS)
            and (self.cache_level is None or self.cache_level in CACHE_LEVELS)
            and (
                self.context_window is None
                or (type(self.context_window) is int and self.context_window > 0)
            )
            and (
                self.http_status is None
                or (type(self.http_status) is int and 100 <= self.http_status <= 599)
            )
            and self.started_at.tzinfo is not None
        ):
            self._check_fields()

    def _check_fields(self) -> None:
        _check_text("provider", self.provider)
        _check_text("model", self.model)
        _check_duration("latency_ms", self.latency_ms)
        if self.ttft_ms is not None:
            _check_duration("ttft_ms", self.ttft_ms)
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
        for name in _COST_FIELDS:
            _check_money(name, getattr(self, name))
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
            type(self.context_window) is not int or self.context_window <= 0
        ):
            raise InvalidRecord(
                "context_window", f"must be a positive integer, got {self.context_window!r}"
            )
        if self.http_status is not None and (
            type(self.http_status) is not int or not 100 <= self.http_status <= 599
        ):
            raise InvalidRecord(
                "http_status", f"must be an HTTP status code, got {self.http_status!r}"
            )
        if self.started_at.tzinfo is None:
            raise InvalidRecord("started_at", "must be timezone-aware (use datetime.now(UTC))")

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
        _check_text("call_id", self.call_id)
        _check_text("name", self.name)
        _check_text("source", self.source)
        if not _is_number(self.min_value) or not _is_number(self.max_value):
            raise InvalidRecord("min_value", "the range bounds must be finite numbers")
        if self.min_value >= self.max_value:
            raise InvalidRecord(
                "max_value", f"must be above min_value ({self.min_value}), got {self.max_value}"
            )
        if not _is_number(self.value):
            raise InvalidRecord("value", f"must be a finite number, got {self.value!r}")
        if not self.min_value <= self.value <= self.max_value:
            raise InvalidRecord(
                "value",
                f"{self.value} is outside the declared range [{self.min_value}, {self.max_value}]",
            )
        if self.created_at.tzinfo is None:
            raise InvalidRecord("created_at", "must be timezone-aware (use datetime.now(UTC))")

    @property
    def normalised(self) -> float:
        """The value mapped onto 0..1, so scores with different ranges can be averaged."""
        return (self.value - self.min_value) / (self.max_value - self.min_value)


def _is_number(value: object) -> bool:
    return (
        type(value) in (int, float) and math.isfinite(value)  # type: ignore[arg-type]  # narrowed by type()
    )


def _money_ok(value: object) -> bool:
    return value is None or (type(value) is Decimal and value.is_finite() and value >= 0)


def _check_text(field: str, value: object) -> None:
    if type(value) is not str or not value:
        raise InvalidRecord(field, f"must be a non-empty string, got {value!r}")


def _check_duration(field: str, value: object) -> None:
    if not _is_number(value) or value < 0:  # type: ignore[operator]  # _is_number narrowed it
        raise InvalidRecord(field, f"must be a finite number >= 0, got {value!r}")


def _check_count(field: str, value: object) -> None:
    if type(value) is not int or value < 0:
        raise InvalidRecord(field, f"must be a whole number >= 0, got {value!r}")


def _check_money(field: str, value: object) -> None:
    if value is None:
        return
    if not isinstance(value, Decimal) or not value.is_finite() or value < 0:
        raise InvalidRecord(field, f"must be a Decimal >= 0 or None, got {value!r}")


def _check_choice(field: str, value: object, allowed: frozenset[str]) -> None:
    if value not in allowed:
        raise InvalidRecord(field, f"unknown value {value!r}; expected one of {sorted(allowed)}")


def tags_of(mapping: Mapping[str, object] | None) -> dict[str, str]:
    """Free-form tags as strings, the only form every sink can carry."""
    if not mapping:
        return {}
    return {str(key): str(value) for key, value in mapping.items()}
