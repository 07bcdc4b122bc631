"""The ingest API prices each call as fields, before it is built: the very call the recorder made."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from aivitals.model import InvalidRecord
from aivitals.price_overrides import Rates
from aivitals.pricing import Pricer
from aivitals.recorder import Recorder
from aivitals.server.models import CallIn
from tests.support.server_app import call_json, served_at

BODIES: list[dict[str, Any]] = [
    call_json(id="priced"),
    call_json(id="tiered", service_tier="flex"),
    call_json(id="cached", input_tokens=1000, cached_input_tokens=600, reasoning_tokens=0),
    call_json(id="hit", cache="hit"),
    call_json(id="unknown", model="no-such-model-anywhere"),
    call_json(id="client", cost_usd="0.5"),
    call_json(id="window", context_window=4096),
]


def test_a_call_priced_from_its_fields_is_the_one_the_recorder_prices_after_the_fact() -> None:
    recorder = Recorder()
    items = [CallIn.model_validate(body) for body in BODIES]
    after = [recorder.record(item.to_call()) for item in items]
    before = [item.to_call(recorder.price_fields) for item in items]
    assert before == after
    recorder.close()
    # gpt-4o-mini at $0.15 and $0.60 a million tokens; 600 cached reads at $0.075; a cache hit
    # costs 0; no price, None; a client's own cost is kept.
    assert [call.cost_usd for call in before] == [
        Decimal("0.00021"),
        after[1].cost_usd,
        Decimal("0.000165"),
        Decimal(0),
        None,
        Decimal("0.5"),
        Decimal("0.00021"),
    ]
    assert [call.price_source for call in before][3:6] == ["cache", None, "client"]
    assert str(before[6].price_source).startswith("genai-prices")
    assert before[-1].context_window == 4096


def test_fields_that_have_a_source_or_cannot_be_priced_get_no_cost_fields() -> None:
    recorder = Recorder()
    assert recorder.price_fields({"price_source": "client", "cost_usd": Decimal(1)}) == {}
    # No started_at: pricing fails, and says nothing here (record counts it if the call is valid).
    assert recorder.price_fields({"provider": "openai", "model": "gpt-4o-mini"}) == {}
    assert recorder.stats.internal_errors == 0
    recorder.close()


def test_an_invalid_call_is_refused_naming_its_field_priced_or_not() -> None:
    recorder = Recorder()
    item = CallIn.model_validate(call_json(latency_ms=10.0, ttft_ms=20.0))
    with pytest.raises(InvalidRecord) as raised:
        item.to_call(recorder.price_fields)
    assert raised.value.field == "ttft_ms"
    recorder.close()


def test_a_price_the_record_refuses_leaves_the_call_unpriced_as_before(tmp_path: Path) -> None:
    # $2,000,000,000 a million input tokens: 1,000 tokens cost $2,000,000, past a call's bound.
    pricer = Pricer(
        overrides={
            (None, "acme-huge"): Rates(input_mtok=Decimal(2_000_000_000), output_mtok=Decimal(1))
        },
        use_catalog=False,
    )
    recorder = Recorder(pricer=pricer)
    call = CallIn.model_validate(call_json(model="acme-huge")).to_call(recorder.price_fields)
    assert (call.model, call.cost_usd, call.price_source) == ("acme-huge", None, None)
    # As the recorder pricing it after the fact leaves it:
    assert recorder.record(call).cost_usd is None
    assert recorder.stats.internal_errors == 1
    recorder.close()


def test_the_api_stores_the_calls_priced_once_at_their_cost(tmp_path: Path) -> None:
    with served_at(tmp_path / "aivitals.db") as served:
        reply = served.client.post("/api/v1/calls", json={"calls": BODIES})
        assert reply.status_code == 202
        stored = {row.call.id: row.call for row in served.stored()}
    recorder = Recorder()
    expected = [recorder.record(CallIn.model_validate(body).to_call()) for body in BODIES]
    recorder.close()
    assert [stored[call.id] for call in expected] == expected
