from __future__ import annotations

import math
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest

from aivitals.model import Call, InvalidRecord, Score, new_id


def call(**overrides: Any) -> Call:
    fields: dict[str, Any] = {"provider": "openai", "model": "gpt-4o-mini", "latency_ms": 100.0}
    fields.update(overrides)
    return Call(**fields)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"input_tokens": -1}, "input_tokens"),
        ({"output_tokens": 1.5}, "output_tokens"),
        ({"cached_input_tokens": True}, "cached_input_tokens"),
        ({"reasoning_tokens": "3"}, "reasoning_tokens"),
        ({"latency_ms": -0.1}, "latency_ms"),
        ({"latency_ms": math.nan}, "latency_ms"),
        ({"ttft_ms": -5.0}, "ttft_ms"),
        ({"status": "exploded"}, "status"),
        ({"status": "error", "error_type": "gremlins"}, "error_type"),
        ({"status": "error"}, "error_type"),
        ({"error_type": "timeout"}, "error_type"),
        ({"operation": "dance"}, "operation"),
        ({"cache": "maybe"}, "cache"),
        ({"model": ""}, "model"),
        ({"provider": None}, "provider"),
        ({"cost_usd": Decimal("-0.01")}, "cost_usd"),
        ({"cost_usd": 0.01}, "cost_usd"),
        ({"http_status": 42}, "http_status"),
        ({"context_window": 0}, "context_window"),
        ({"started_at": datetime(2026, 1, 1)}, "started_at"),
        ({"input_tokens": 10, "cached_input_tokens": 11}, "cached_input_tokens"),
        ({"output_tokens": 10, "reasoning_tokens": 11}, "reasoning_tokens"),
    ],
)
def test_call_refuses_bad_values_naming_the_field(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRecord) as raised:
        call(**overrides)
    assert raised.value.field == field
    assert str(raised.value).startswith(f"{field}: ")


def test_valid_error_call() -> None:
    made = call(status="error", error_type="rate_limit", http_status=429)
    assert made.error_type == "rate_limit"


def test_ids_are_time_ordered_and_unique() -> None:
    ids = [new_id() for _ in range(2000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert call().id != call().id


def test_derived_signals() -> None:
    made = call(
        latency_ms=1100.0,
        ttft_ms=100.0,
        output_tokens=500,
        input_tokens=32000,
        context_window=128000,
    )
    assert made.output_tokens_per_second == pytest.approx(500.0)
    assert made.context_utilisation == pytest.approx(0.25)
    assert call().context_utilisation is None
    assert (
        call(status="error", error_type="other", output_tokens=5).output_tokens_per_second is None
    )


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"value": math.nan}, "value"),
        ({"value": 1.5}, "value"),
        ({"value": -0.1}, "value"),
        ({"value": 3, "min_value": 5, "max_value": 1}, "max_value"),
        ({"name": ""}, "name"),
        ({"call_id": ""}, "call_id"),
        ({"value": "0.5"}, "value"),
    ],
)
def test_score_refuses_bad_values(overrides: dict[str, Any], field: str) -> None:
    fields: dict[str, Any] = {"call_id": "c1", "name": "relevance", "value": 0.5}
    fields.update(overrides)
    with pytest.raises(InvalidRecord) as raised:
        Score(**fields)
    assert raised.value.field == field


def test_score_normalised_to_unit_range() -> None:
    assert Score(call_id="c", name="stars", value=4, min_value=1, max_value=5).normalised == 0.75
