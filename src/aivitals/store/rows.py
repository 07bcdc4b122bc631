"""`Call` and `Score` to table rows and back: the only place that knows both shapes.

`row_call` and `row_score` trust the row; `readable_call` and `readable_score` do not. They answer
None for a row that cannot be turned back into a record a read can answer with (a value out of
the ranges of `aivitals.store.bounds`, text that is not valid Unicode, a time no datetime holds),
so listings skip it and count it instead of failing.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from aivitals.model import Call, Score
from aivitals.store import bounds

_NANO = Decimal("1e-9")


def epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def to_nusd(cost: Decimal | None) -> int | None:
    """Cost in integer nano-dollars, rounded half-even: what sums are made of."""
    if cost is None:
        return None
    return int((cost / _NANO).to_integral_value(rounding=ROUND_HALF_EVEN))


CALL_COLUMNS = (
    "id",
    "started_ms",
    "trace_id",
    "span_id",
    "parent_span_id",
    "latency_ms",
    "ttft_ms",
    "queue_ms",
    "provider",
    "model",
    "response_model",
    "operation",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cache_write_1h_tokens",
    "server_tool_uses",
    "tokens_estimated",
    "cost_usd",
    "cost_nusd",
    "input_cost_usd",
    "output_cost_usd",
    "price_source",
    "service_tier",
    "saved_usd",
    "status",
    "error_type",
    "error_message",
    "http_status",
    "finish_reason",
    "cache",
    "cache_level",
    "context_window",
    "user",
    "feature",
    "team",
    "endpoint",
    "prompt_version",
    "environment",
    "quantization",
    "tags",
)
"""The ``calls`` table's columns, in the order `call_values` gives a row's values."""

# Most calls of a source carry the same few tags (a service name, an environment): their JSON
# text is kept, so a batch encodes each distinct set once. Bounded: cleared when full.
_TAGS_JSON: dict[tuple[tuple[str, str], ...], str] = {}
_TAGS_JSON_MAX = 1024


def call_row(call: Call) -> dict[str, Any]:
    """The ``calls`` row of ``call``, by column name."""
    return dict(zip(CALL_COLUMNS, call_values(call), strict=True))


def call_values(call: Call, cost_nusd: int | None = None) -> tuple[Any, ...]:
    """The ``calls`` row of ``call`` as values in `CALL_COLUMNS` order (what the writer inserts).

    ``cost_nusd`` is ``to_nusd(call.cost_usd)`` when the caller has it already.
    """
    # A tuple built in one expression: the writer makes one per stored call, and a dict per row
    # then reordered for the driver cost a fifth of a store write.
    cost, uses, tags = call.cost_usd, call.server_tool_uses, call.tags
    if cost_nusd is None and cost is not None:
        cost_nusd = to_nusd(cost)
    return (
        call.id,
        int(call.started_at.timestamp() * 1000),
        call.trace_id,
        call.span_id,
        call.parent_span_id,
        call.latency_ms,
        call.ttft_ms,
        call.queue_ms,
        call.provider,
        call.model,
        call.response_model,
        call.operation,
        call.input_tokens,
        call.output_tokens,
        call.cached_input_tokens,
        call.cache_write_tokens,
        call.reasoning_tokens,
        call.cache_write_1h_tokens,
        json.dumps(uses, separators=(",", ":")) if uses else None,
        call.tokens_estimated,
        None if cost is None else str(cost),
        cost_nusd,
        None if call.input_cost_usd is None else str(call.input_cost_usd),
        None if call.output_cost_usd is None else str(call.output_cost_usd),
        call.price_source,
        call.service_tier,
        None if call.saved_usd is None else str(call.saved_usd),
        call.status,
        call.error_type,
        call.error_message,
        call.http_status,
        call.finish_reason,
        call.cache,
        call.cache_level,
        call.context_window,
        call.user,
        call.feature,
        call.team,
        call.endpoint,
        call.prompt_version,
        call.environment,
        call.quantization,
        _tags_json(tags) if tags else None,
    )


def _tags_json(tags: dict[str, str]) -> str:
    key = tuple(tags.items())
    text = _TAGS_JSON.get(key)
    if text is None:
        text = json.dumps(tags, separators=(",", ":"))
        if len(_TAGS_JSON) >= _TAGS_JSON_MAX:
            _TAGS_JSON.clear()
        _TAGS_JSON[key] = text
    return text


def row_call(row: Any) -> Call:
    """A stored row (a SQLAlchemy Row or a mapping) back into a `Call`."""
    data = dict(row._mapping) if hasattr(row, "_mapping") else dict(row)
    started = datetime.fromtimestamp(data.pop("started_ms") / 1000, UTC)
    data.pop("cost_nusd", None)
    for name in ("cost_usd", "input_cost_usd", "output_cost_usd", "saved_usd"):
        data[name] = None if data[name] is None else Decimal(data[name])
    data["tags"] = json.loads(data["tags"]) if data.get("tags") else {}
    uses = data.get("server_tool_uses")
    data["server_tool_uses"] = json.loads(uses) if uses else {}
    data["tokens_estimated"] = bool(data["tokens_estimated"])
    return Call(started_at=started, **data)


# What decoding a stored row can raise when the row is bad: a failed check in the record's
# validation (ValueError), a text that is no number (ArithmeticError: decimal.InvalidOperation),
# a time no datetime holds (OverflowError, OSError), a column of the wrong type (TypeError).
_UNREADABLE = (ValueError, TypeError, OverflowError, OSError, ArithmeticError, KeyError)


def readable_call(row: Any) -> Call | None:
    """The stored call, or None if a read must skip it (see the module's docstring)."""
    data = row._mapping if hasattr(row, "_mapping") else row
    started = data["started_ms"]
    if type(started) is not int or not bounds.MIN_STARTED_MS <= started <= bounds.MAX_STARTED_MS:
        return None
    try:
        call = row_call(row)
    except _UNREADABLE:
        return None
    return call if _call_ok(call) else None


def readable_score(row: Any) -> Score | None:
    """The stored score, or None if a read must skip it."""
    data = row._mapping if hasattr(row, "_mapping") else row
    created = data["created_ms"]
    if type(created) is not int or not bounds.MIN_STARTED_MS <= created <= bounds.MAX_STARTED_MS:
        return None
    try:
        score = row_score(row)
    except _UNREADABLE:
        return None
    numbers_ok = all(
        isinstance(v, int | float) and bounds.score_ok(v)
        for v in (score.value, score.min_value, score.max_value)
    )
    texts = [getattr(score, name) for name in score.__struct_fields__]
    return score if numbers_ok and _texts_ok(texts) else None


def _call_ok(call: Call) -> bool:
    durations = (call.latency_ms, call.ttft_ms, call.queue_ms)
    if not all(
        v is None or (isinstance(v, int | float) and bounds.duration_ok(v)) for v in durations
    ):
        return False
    tokens = (
        call.input_tokens,
        call.output_tokens,
        call.cached_input_tokens,
        call.cache_write_tokens,
        call.reasoning_tokens,
        call.cache_write_1h_tokens,
    )
    if not all(type(v) is int and bounds.tokens_ok(v) for v in tokens):
        return False
    money = (call.cost_usd, call.input_cost_usd, call.output_cost_usd, call.saved_usd)
    if not all(bounds.usd_ok(v) for v in money):
        return False
    tags = call.tags
    if not isinstance(tags, dict) or not all(
        type(k) is str and type(v) is str for k, v in tags.items()
    ):
        return False
    texts = [getattr(call, name) for name in call.__struct_fields__ if name != "tags"]
    return _texts_ok([*texts, *tags, *tags.values()])


def _texts_ok(values: list[Any]) -> bool:
    """Every string among ``values`` is valid Unicode (no lone surrogate): JSON can carry it."""
    try:
        for value in values:
            if isinstance(value, str):
                value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def score_row(score: Score) -> dict[str, Any]:
    return {
        "id": score.id,
        "call_id": score.call_id,
        "name": score.name,
        "value": float(score.value),
        "normalised": score.normalised,
        "min_value": float(score.min_value),
        "max_value": float(score.max_value),
        "source": score.source,
        "comment": score.comment,
        "created_ms": epoch_ms(score.created_at),
        "model": score.model,
        "feature": score.feature,
    }


def row_score(row: Any) -> Score:
    data = dict(row._mapping) if hasattr(row, "_mapping") else dict(row)
    created = datetime.fromtimestamp(data.pop("created_ms") / 1000, UTC)
    data.pop("normalised", None)
    return Score(created_at=created, **data)
