"""The writer's fast paths give exactly what the plain ones gave: rows, tags' JSON, rollup sums."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from aivitals.model import Call
from aivitals.store import schema
from aivitals.store.rollup import rollup_rows
from aivitals.store.rows import CALL_COLUMNS, call_row, call_values, to_nusd

T0 = datetime(2025, 3, 9, 12, 0, tzinfo=UTC)


def test_call_values_are_the_row_in_the_tables_column_order() -> None:
    call = Call(
        provider="openai",
        model="gpt-4o",
        latency_ms=812.5,
        started_at=T0,
        input_tokens=1200,
        cached_input_tokens=1024,
        output_tokens=80,
        cost_usd=Decimal("0.0012345678905"),
        server_tool_uses={"web_search": 2},
        tags={"service.name": "app", "region": "eu"},
    )
    assert tuple(column.key for column in schema.calls.columns) == CALL_COLUMNS
    values = call_values(call)
    assert dict(zip(CALL_COLUMNS, values, strict=True)) == call_row(call)
    row = call_row(call)
    assert row["started_ms"] == 1_741_521_600_000
    assert row["cost_usd"] == "0.0012345678905"
    assert row["cost_nusd"] == 1_234_568  # 1,234,567.8905 nano-dollars, rounded
    assert row["server_tool_uses"] == '{"web_search":2}'
    assert call_values(call, 7)[CALL_COLUMNS.index("cost_nusd")] == 7


def test_tags_json_is_json_dumps_of_each_call_tags_in_their_order() -> None:
    first = Call(provider="openai", model="gpt-4o", latency_ms=1.0, tags={"a": "1", "b": "2"})
    swapped = Call(provider="openai", model="gpt-4o", latency_ms=1.0, tags={"b": "2", "a": "1"})
    other = Call(provider="openai", model="gpt-4o", latency_ms=1.0, tags={"a": "1", "b": "3"})
    texts = [call_row(call)["tags"] for call in (first, swapped, first, other, swapped)]
    assert texts == [
        '{"a":"1","b":"2"}',
        '{"b":"2","a":"1"}',
        '{"a":"1","b":"2"}',
        '{"a":"1","b":"3"}',
        '{"b":"2","a":"1"}',
    ]
    accented = Call(provider="openai", model="gpt-4o", latency_ms=1.0, tags={"city": "Zürich"})
    assert call_row(accented)["tags"] == json.dumps({"city": "Zürich"}, separators=(",", ":"))
    assert call_row(Call(provider="openai", model="gpt-4o", latency_ms=1.0))["tags"] is None


def test_rollup_float_sums_are_the_members_summed_in_call_order() -> None:
    # Float addition is not associative: the sums must come out as adding each member's value
    # in the order the calls came, the way they always have, to the last bit.
    rng = random.Random(7)
    calls = [
        Call(
            provider="openai",
            model=rng.choice(["gpt-4o", "gpt-4o-mini"]),
            latency_ms=rng.uniform(0.1, 5000.0),
            ttft_ms=rng.choice([None, rng.uniform(0.01, 0.1)]),
            output_tokens=rng.randint(0, 900),
            started_at=T0 + timedelta(seconds=rng.uniform(0, 7200)),
            cost_usd=rng.choice([None, Decimal(rng.randint(0, 10**9)) / 10**12]),
            status=rng.choice(["ok", "ok", "cancelled"]),
        )
        for _ in range(400)
    ]
    rows = rollup_rows(calls)
    assert {row["granularity"] for row in rows} == {60, 3600, 86400}
    for row in rows:
        size = row["granularity"]
        members = [
            c
            for c in calls
            if c.model == row["model"]
            and c.status == row["status"]
            and int(c.started_at.timestamp()) // size * size == row["bucket_start"]
        ]
        latencies = 0.0
        ttfts = 0.0
        speeds = 0.0
        speed_count = 0
        for c in members:
            latencies += c.latency_ms
            if c.ttft_ms is not None:
                ttfts += c.ttft_ms
            if c.output_tokens and c.status == "ok":
                speeds += c.output_tokens * 1000.0 / (c.latency_ms - (c.ttft_ms or 0.0))
                speed_count += 1
        assert row["calls"] == len(members)
        assert row["latency_sum_ms"] == latencies
        assert row["ttft_sum_ms"] == ttfts
        assert (row["speed_sum"], row["speed_count"]) == (speeds, speed_count)
        assert row["cancelled"] == sum(1 for c in members if c.status == "cancelled")
        assert row["unpriced"] == sum(1 for c in members if c.cost_usd is None)
        assert row["cost_nusd"] == sum(to_nusd(c.cost_usd) or 0 for c in members)
        assert row["output_tokens"] == sum(c.output_tokens for c in members)
