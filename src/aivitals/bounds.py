"""The limits every `Call` and `Score` must keep, in one place: what a value can sanely be, and what
the store's columns and sums can hold.

`aivitals.model` enforces them for every source (SDK, gateway, ingest, OTLP); the ingest API's
pydantic models state them in the OpenAPI document; the store's schema can size its columns from
them. docs/store.md ("Limits") says why each figure is what it is.

>>> MAX_DURATION_MS, MAX_TOKENS, MAX_USD
(86400000, 1000000000, Decimal('1000000'))
>>> CALL_TEXT_CHARS["environment"]
64
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import MappingProxyType

MAX_DURATION_MS = 86_400_000
"""One day: the most ``latency_ms``, ``ttft_ms`` and ``queue_ms`` can be."""

MAX_TOKENS = 1_000_000_000
"""The most each token count (and ``context_window``) can be: a sum over nine billion calls at
this figure still fits a signed 64-bit column."""

MAX_USD = Decimal(1_000_000)
"""The most each money field (``cost_usd``, ``input_cost_usd``, ``output_cost_usd``,
``saved_usd``) can be; none can be negative."""

MAX_MONEY_CHARS = 40
"""Money is stored as its exact decimal text; a value whose text is longer does not fit."""

EARLIEST_TIME = datetime(2000, 1, 1, tzinfo=UTC)
"""No call or score is older than this."""

MAX_AHEAD = timedelta(days=1)
"""No call or score is later than this past now (UTC): room for clock skew, not for typos."""

MAX_SCORE_MAGNITUDE = 1e9
"""A score's value and its declared range stay within plus or minus this."""

MAX_LONG_TEXT_CHARS = 4096
"""``error_message`` and a score's ``comment``: free text, kept bounded."""

MAX_TAGS = 64
"""The most free-form tags one call carries."""

MAX_TAG_KEY_CHARS = 128
MAX_TAG_VALUE_CHARS = 512

MAX_TOOL_USES = 100_000
"""The most server-side tool uses of one kind (web searches, code executions...) one call bills:
providers cap them per request in the tens; this leaves room without letting a typo through."""

CALL_TEXT_CHARS: Mapping[str, int] = MappingProxyType(
    {
        "id": 36,
        "trace_id": 32,
        "span_id": 16,
        "parent_span_id": 16,
        "provider": 64,
        "model": 200,
        "response_model": 200,
        "price_source": 200,
        "error_message": MAX_LONG_TEXT_CHARS,
        "finish_reason": 32,
        "user": 200,
        "feature": 200,
        "team": 200,
        "endpoint": 200,
        "prompt_version": 200,
        "environment": 64,
        "service_tier": 32,
        "quantization": 32,
    }
)
"""The longest text of each free-text field of a `Call`, in characters: its store column's size."""

SCORE_TEXT_CHARS: Mapping[str, int] = MappingProxyType(
    {
        "id": 36,
        "call_id": 36,
        "name": 200,
        "source": 64,
        "comment": MAX_LONG_TEXT_CHARS,
        "model": 200,
        "feature": 200,
    }
)
"""The longest text of each text field of a `Score`, in characters."""

OUTCOME_TEXT_CHARS: Mapping[str, int] = MappingProxyType(
    {
        "id": 36,
        "call_id": 36,
        "name": 200,
        "predicted": 200,
        "actual": 200,
        "source": 64,
        "model": 200,
        "feature": 200,
    }
)
"""The longest text of each text field of an `Outcome`, in characters: its store column's size."""
