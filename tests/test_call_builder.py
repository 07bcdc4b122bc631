"""One way to build a `Call`: every source's fields are exactly the record's.

The draft is the one place a call is assembled; the ingest model and the store row must name
the same fields, so a field added to `Call` cannot be forgotten by one of them (the gateway
once dropped ``cache_write_tokens`` that way).
"""

from __future__ import annotations

from decimal import Decimal

from aivitals.draft import CallDraft
from aivitals.model import Call
from aivitals.server.models import CallIn
from aivitals.store import schema
from aivitals.store.rows import call_row
from aivitals.usage import TokenUsage

CALL_FIELDS = set(Call.__struct_fields__)
PRICED = {"cost_usd", "input_cost_usd", "output_cost_usd", "price_source"}


def test_the_ingest_model_has_exactly_the_fields_of_a_call() -> None:
    assert set(CallIn.model_fields) == CALL_FIELDS


def test_the_store_row_has_exactly_the_fields_of_a_call() -> None:
    # Two columns are kept in another form for indexing and summing: the start in epoch ms
    # (instead of started_at) and the cost in nano-dollars beside its exact text.
    columns = {column.name for column in schema.calls.columns}
    assert columns - {"started_ms", "cost_nusd"} == CALL_FIELDS - {"started_at"}
    row = call_row(Call(provider="openai", model="gpt-4o", latency_ms=1.0))
    assert set(row) == columns


def test_a_draft_fills_every_field_of_a_call_but_the_price() -> None:
    draft = CallDraft(provider="openai", model="gpt-4o")
    assert set(draft.fields(latency_ms=1.0)) == CALL_FIELDS - PRICED
    draft.priced = {"cost_usd": Decimal("0.5"), "price_source": "client"}
    assert set(draft.fields(latency_ms=1.0)) >= {"cost_usd", "price_source"}


def test_a_draft_keeps_cache_writes_the_gateway_once_dropped() -> None:
    draft = CallDraft(provider="anthropic", model="claude-sonnet-4-5")
    draft.set_tokens(TokenUsage(input_tokens=2000, cache_write_tokens=1500, output_tokens=10))
    assert draft.freeze(latency_ms=5.0).cache_write_tokens == 1500


def test_an_error_and_a_cancellation_set_the_outcome() -> None:
    import asyncio

    draft = CallDraft(provider="openai", model="gpt-4o")
    draft.fail(TimeoutError("slow"))
    assert (draft.status, draft.error_type) == ("error", "timeout")
    draft.fail(asyncio.CancelledError())
    assert (draft.status, draft.error_type, draft.error_message) == ("cancelled", None, None)
