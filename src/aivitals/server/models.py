"""Request bodies of the ingest API: a `Call` or a `Score` as JSON, one at a time or in a batch.

The fields and their JSON forms are the ones ``msgspec.json.encode(call)`` writes, so a call the
SDK encoded posts unchanged: ``started_at`` is ISO 8601 with an offset, money is a decimal string
(or a number), ``tags`` is an object of strings. Unknown fields are refused, so a misspelt
attribution field fails loudly instead of vanishing. The limits are `aivitals.bounds`, stated here
so the OpenAPI document shows them; `Call` and `Score` check them again with what JSON Schema
cannot say (no lone surrogate, ``ttft_ms <= latency_ms``, a time no later than tomorrow), and the
422 names the field either way.

>>> CallIn.model_validate({"provider": "openai", "model": "gpt-4o", "latency_ms": 812}).to_call().latency_ms
812.0
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
)
from pydantic_core import PydanticCustomError

from aivitals.bounds import (
    CALL_TEXT_CHARS,
    MAX_DURATION_MS,
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
from aivitals.model import (
    CacheLevel,
    CacheResult,
    Call,
    ErrorType,
    InvalidRecord,
    Operation,
    Outcome,
    Score,
    Status,
    new_id,
    tags_problem,
    tool_uses_problem,
    utc_now,
)

MAX_BATCH = 1000
"""Most calls (or scores) in one request; larger batches are refused whole with a 422."""

BATCH_TAGS = frozenset({"one", "batch"})
"""Tags of the one-or-batch body unions; pydantic puts them in error locations (errors.py drops them)."""


def _fits(limits: Mapping[str, int], field: str) -> StringConstraints:
    """Non-empty text no longer than the field's limit (the store's column size)."""
    return StringConstraints(strict=True, min_length=1, max_length=limits[field])


def _check_tags(value: object) -> object:
    # Checked whole before pydantic walks the items: its own errors would name a tag by its key,
    # echoing it (it may be huge, or not valid UTF-8) into the 422.
    if isinstance(value, dict):
        problem = tags_problem(value)
        if problem is not None:
            raise PydanticCustomError("tags", problem)
    return value


def _check_tool_uses(value: object) -> object:
    # Checked whole, like tags: the 422 names an unknown tool without pydantic's own echo.
    if isinstance(value, dict):
        problem = tool_uses_problem(value)
        if problem is not None:
            raise PydanticCustomError("server_tool_uses", problem)
    return value


Count = Annotated[int, Field(strict=True, ge=0, le=MAX_TOKENS)]
Millis = Annotated[float, Field(strict=True, ge=0, le=MAX_DURATION_MS, allow_inf_nan=False)]
Money = Annotated[Decimal, Field(ge=0, le=MAX_USD, allow_inf_nan=False)]
ScoreNumber = Annotated[
    float,
    Field(strict=True, ge=-MAX_SCORE_MAGNITUDE, le=MAX_SCORE_MAGNITUDE, allow_inf_nan=False),
]
Tags = Annotated[
    dict[
        Annotated[str, StringConstraints(strict=True, min_length=1, max_length=MAX_TAG_KEY_CHARS)],
        Annotated[str, StringConstraints(strict=True, max_length=MAX_TAG_VALUE_CHARS)],
    ],
    BeforeValidator(_check_tags),
    Field(max_length=MAX_TAGS),
]
ToolUses = Annotated[
    dict[
        Annotated[str, StringConstraints(strict=True, min_length=1, max_length=32)],
        Annotated[int, Field(strict=True, ge=0, le=MAX_TOOL_USES)],
    ],
    BeforeValidator(_check_tool_uses),
]

_C = CALL_TEXT_CHARS
_S = SCORE_TEXT_CHARS


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CallIn(_Body):
    """One call as JSON; ``provider``, ``model`` and ``latency_ms`` are required."""

    provider: Annotated[str, _fits(_C, "provider")]
    model: Annotated[str, _fits(_C, "model")]
    latency_ms: Millis
    id: Annotated[str, _fits(_C, "id")] | None = None
    trace_id: Annotated[str, _fits(_C, "trace_id")] | None = None
    span_id: Annotated[str, _fits(_C, "span_id")] | None = None
    parent_span_id: Annotated[str, _fits(_C, "parent_span_id")] | None = None
    started_at: datetime | None = None
    ttft_ms: Millis | None = None
    queue_ms: Millis | None = None
    response_model: Annotated[str, _fits(_C, "response_model")] | None = None
    operation: Operation = "chat"
    input_tokens: Count = 0
    output_tokens: Count = 0
    cached_input_tokens: Count = 0
    cache_write_tokens: Count = 0
    reasoning_tokens: Count = 0
    cache_write_1h_tokens: Count = 0
    server_tool_uses: ToolUses = Field(default_factory=dict)
    tokens_estimated: Annotated[bool, Field(strict=True)] = False
    cost_usd: Money | None = None
    input_cost_usd: Money | None = None
    output_cost_usd: Money | None = None
    saved_usd: Money | None = None
    price_source: Annotated[str, _fits(_C, "price_source")] | None = None
    service_tier: Annotated[str, _fits(_C, "service_tier")] | None = None
    status: Status = "ok"
    error_type: ErrorType | None = None
    error_message: Annotated[str, _fits(_C, "error_message")] | None = None
    http_status: Annotated[int, Field(strict=True, ge=100, le=599)] | None = None
    finish_reason: Annotated[str, _fits(_C, "finish_reason")] | None = None
    cache: CacheResult | None = None
    cache_level: CacheLevel | None = None
    context_window: Annotated[int, Field(strict=True, gt=0, le=MAX_TOKENS)] | None = None
    user: Annotated[str, _fits(_C, "user")] | None = None
    feature: Annotated[str, _fits(_C, "feature")] | None = None
    team: Annotated[str, _fits(_C, "team")] | None = None
    endpoint: Annotated[str, _fits(_C, "endpoint")] | None = None
    prompt_version: Annotated[str, _fits(_C, "prompt_version")] | None = None
    environment: Annotated[str, _fits(_C, "environment")] | None = None
    quantization: Annotated[str, _fits(_C, "quantization")] | None = None
    tags: Tags = Field(default_factory=dict)

    def to_call(self, price: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> Call:
        """The `Call`; raises `aivitals.model.InvalidRecord` for values that cannot go together.

        A cost sent without a ``price_source`` is kept as the client's (``price_source`` becomes
        ``"client"``): the recorder prices only calls that have no source yet. ``price``
        (`Recorder.price_fields`) prices the fields first, so the call is built once.
        """
        fields = self.model_dump(exclude_none=True)
        fields.setdefault("id", new_id())
        fields.setdefault("started_at", utc_now())
        if self.cost_usd is not None and self.price_source is None:
            fields["price_source"] = "client"
        cost = price(fields) if price is not None else None
        if cost:
            try:
                return Call(**{**fields, **cost})
            except InvalidRecord:
                # A price the record refuses (a cost past its bound): the call goes on unpriced,
                # as when the recorder prices it after the fact, which then says what failed.
                pass
        return Call(**fields)


class CallBatch(_Body):
    """Several calls, accepted or refused together."""

    calls: Annotated[list[CallIn], Field(max_length=MAX_BATCH)]


class ScoreIn(_Body):
    """One quality score as JSON; ``call_id``, ``name`` and ``value`` are required."""

    call_id: Annotated[str, _fits(_S, "call_id")]
    name: Annotated[str, _fits(_S, "name")]
    value: ScoreNumber
    id: Annotated[str, _fits(_S, "id")] | None = None
    source: Annotated[str, _fits(_S, "source")] = "api"
    comment: Annotated[str, _fits(_S, "comment")] | None = None
    min_value: ScoreNumber = 0.0
    max_value: ScoreNumber = 1.0
    created_at: datetime | None = None
    model: Annotated[str, _fits(_S, "model")] | None = None
    feature: Annotated[str, _fits(_S, "feature")] | None = None

    def to_score(self) -> Score:
        """The `Score`; raises `aivitals.model.InvalidRecord` (a value outside its range, say)."""
        fields = self.model_dump(exclude_none=True)
        fields.setdefault("id", new_id())
        fields.setdefault("created_at", utc_now())
        return Score(**fields)


class ScoreBatch(_Body):
    """Several scores, accepted or refused together."""

    scores: Annotated[list[ScoreIn], Field(max_length=MAX_BATCH)]


_O = OUTCOME_TEXT_CHARS
LabelIn = (
    Annotated[str, StringConstraints(strict=True, min_length=1, max_length=_O["predicted"])]
    | Annotated[bool, Field(strict=True)]
    | Annotated[float, Field(strict=True, allow_inf_nan=False)]
)
"""A class label (text, or true/false) or a number."""


class OutcomeIn(_Body):
    """One labelled outcome as JSON; ``call_id``, ``predicted`` and ``actual`` are required.

    Two labels (text or true/false) are a classification, two numbers a regression, and a
    number predicted for a true/false ``actual`` the probability of true (docs/quality.md).
    """

    call_id: Annotated[str, _fits(_O, "call_id")]
    predicted: LabelIn
    actual: LabelIn
    probability: Annotated[float, Field(strict=True, ge=0.0, le=1.0)] | None = None
    name: Annotated[str, _fits(_O, "name")] = "default"
    id: Annotated[str, _fits(_O, "id")] | None = None
    source: Annotated[str, _fits(_O, "source")] = "api"
    created_at: datetime | None = None
    model: Annotated[str, _fits(_O, "model")] | None = None
    feature: Annotated[str, _fits(_O, "feature")] | None = None

    def to_outcome(self) -> Outcome:
        """The `Outcome`; raises `aivitals.model.InvalidRecord` (a label for a number, say)."""
        fields = self.model_dump(exclude_none=True, exclude={"predicted", "actual", "call_id"})
        fields.setdefault("id", new_id())
        fields.setdefault("created_at", utc_now())
        return Outcome.of(self.call_id, predicted=self.predicted, actual=self.actual, **fields)


class OutcomeBatch(_Body):
    """Several outcomes, accepted or refused together."""

    outcomes: Annotated[list[OutcomeIn], Field(max_length=MAX_BATCH)]


def _one_or_batch(key: str) -> Any:
    def which(value: Any) -> str:
        return "batch" if isinstance(value, dict) and key in value else "one"

    return Discriminator(which)


CallsBody = Annotated[
    Annotated[CallIn, Tag("one")] | Annotated[CallBatch, Tag("batch")], _one_or_batch("calls")
]
"""What ``POST /api/v1/calls`` takes: one call, or ``{"calls": [...]}``."""

ScoresBody = Annotated[
    Annotated[ScoreIn, Tag("one")] | Annotated[ScoreBatch, Tag("batch")], _one_or_batch("scores")
]
"""What ``POST /api/v1/scores`` takes: one score, or ``{"scores": [...]}``."""

OutcomesBody = Annotated[
    Annotated[OutcomeIn, Tag("one")] | Annotated[OutcomeBatch, Tag("batch")],
    _one_or_batch("outcomes"),
]
"""What ``POST /api/v1/outcomes`` takes: one outcome, or ``{"outcomes": [...]}``."""


class Accepted(BaseModel):
    """The answer to an accepted ingest: how many were recorded, and their ids in request order."""

    accepted: int
    ids: list[str]
