"""The limits at the door, written out as figures (docs/store.md, "Limits").

Stated here once for the tests, never read from `aivitals.bounds`: a test whose expected limit
came from the code under test could not catch that code changing it.
"""

from __future__ import annotations

from decimal import Decimal

DAY_MS = 86_400_000
MAX_TOKENS = 1_000_000_000
MAX_USD = Decimal(1_000_000)
MAX_TAGS = 64
MAX_TAG_KEY = 128
MAX_TAG_VALUE = 512
MAX_TOOL_USES = 100_000

CALL_TEXT = {
    "id": 36,
    "trace_id": 32,
    "span_id": 16,
    "parent_span_id": 16,
    "provider": 64,
    "model": 200,
    "response_model": 200,
    "price_source": 200,
    "error_message": 4096,
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
"""Longest text each call field holds, in characters: the store's column sizes."""
