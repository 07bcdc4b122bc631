"""Request bodies of the ingest API: a `Call` or a `Score` as JSON, one at a time or in a batch.

The fields and their JSON forms are the ones ``msgspec.json.encode(call)`` writes, so a call the
SDK encoded posts unchanged: ``started_at`` is ISO 8601 with an offset, money is a decimal string
(or a number), ``tags`` is an object of strings. Unknown fields are refused, so a misspelt
attribution field fails loudly instead of vanishing. Text limits are the store's column sizes.

>>> CallIn.model_validate({"provider": "openai", "model": "gpt-4o", "latency_ms": 812}).to_call().latency_ms
812.0
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Discriminator, Field, StringConstraints, Tag

from aivitals.model import (
    CacheLevel,
    CacheResult,
    Call,
    ErrorType,
    Operation,
    Score,
    Status,
    new_id,
    utc_now,
)
from aivitals.store import schema

MAX_BATCH = 1000
"""Most calls (or scores) in one request; larger batches are refused whole with a 422."""

BATCH_TAGS = frozenset({"one", "batch"})
"""Tags of the one-or-batch body unions; pydantic puts them in error locations (errors.py drops them)."""


def _limit(table: sa.Table, column: str) -> int | None:
    kind = table.c[column].type
    return kind.length if isinstance(kind, sa.String) else None


def _fits(table: sa.Table, column: str) -> StringConstraints:
    """Non-empty text no longer than the store's column (which PostgreSQL would refuse)."""
    return StringConstraints(strict=True, min_length=1, max_length=_limit(table, column))


Count = Annotated[int, Field(strict=True, ge=0)]
Millis = Annotated[float, Field(strict=True, ge=0, allow_inf_nan=False)]
Money = Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]
Finite = Annotated[float, Field(strict=True, allow_inf_nan=False)]

_C = schema.calls
_S = schema.scores


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
    tokens_estimated: Annotated[bool, Field(strict=True)] = False
    cost_usd: Money | None = None
    input_cost_usd: Money | None = None
    output_cost_usd: Money | None = None
    saved_usd: Money | None = None
    price_source: Annotated[str, _fits(_C, "price_source")] | None = None
    status: Status = "ok"
    error_type: ErrorType | None = None
    error_message: Annotated[str, Field(strict=True)] | None = None
    http_status: Annotated[int, Field(strict=True, ge=100, le=599)] | None = None
    finish_reason: Annotated[str, _fits(_C, "finish_reason")] | None = None
    cache: CacheResult | None = None
    cache_level: CacheLevel | None = None
    context_window: Annotated[int, Field(strict=True, gt=0)] | None = None
    user: Annotated[str, _fits(_C, "user")] | None = None
    feature: Annotated[str, _fits(_C, "feature")] | None = None
    team: Annotated[str, _fits(_C, "team")] | None = None
    endpoint: Annotated[str, _fits(_C, "endpoint")] | None = None
    prompt_version: Annotated[str, _fits(_C, "prompt_version")] | None = None
    environment: Annotated[str, _fits(_C, "environment")] | None = None
    tags: dict[str, Annotated[str, Field(strict=True)]] = Field(default_factory=dict)

    def to_call(self) -> Call:
        """The `Call`; raises `aivitals.model.InvalidRecord` for values that cannot go together.

        A cost sent without a ``price_source`` is kept as the client's (``price_source`` becomes
        ``"client"``): the recorder prices only calls that have no source yet.
        """
        fields = self.model_dump(exclude_none=True)
        fields.setdefault("id", new_id())
        fields.setdefault("started_at", utc_now())
        if self.cost_usd is not None and self.price_source is None:
            fields["price_source"] = "client"
        return Call(**fields)


class CallBatch(_Body):
    """Several calls, accepted or refused together."""

    calls: Annotated[list[CallIn], Field(max_length=MAX_BATCH)]


class ScoreIn(_Body):
    """One quality score as JSON; ``call_id``, ``name`` and ``value`` are required."""

    call_id: Annotated[str, _fits(_S, "call_id")]
    name: Annotated[str, _fits(_S, "name")]
    value: Finite
    id: Annotated[str, _fits(_S, "id")] | None = None
    source: Annotated[str, _fits(_S, "source")] = "api"
    comment: Annotated[str, Field(strict=True)] | None = None
    min_value: Finite = 0.0
    max_value: Finite = 1.0
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


class Accepted(BaseModel):
    """The answer to an accepted ingest: how many were recorded, and their ids in request order."""

    accepted: int
    ids: list[str]
