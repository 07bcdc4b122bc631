"""A self-hosted model's quantisation and a call's service tier: fields to filter and group by."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from aivitals.query import Filters, Queries, Window, check_by, parse_where
from aivitals.store.sql import SqlStore

from .support.helpers import make_call

T0 = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)
DAY = Window(start=T0.replace(hour=0), end=T0.replace(hour=0) + timedelta(days=1))


def test_report_by_quantization_and_by_service_tier(store_target: str) -> None:
    store = SqlStore.open(store_target)
    calls = [
        make_call(
            provider="vllm",
            model="qwen2.5-3b",
            quantization="q4_K_M",
            cost_usd=Decimal(1),
            started_at=T0,
        ),
        make_call(
            provider="vllm",
            model="qwen2.5-3b",
            quantization="q4_K_M",
            cost_usd=Decimal(1),
            started_at=T0,
        ),
        make_call(
            provider="vllm",
            model="qwen2.5-3b",
            quantization="fp8",
            cost_usd=Decimal(5),
            started_at=T0,
        ),
        make_call(model="gpt-5", service_tier="priority", cost_usd=Decimal(3), started_at=T0),
    ]
    store.write(calls, [])
    queries = Queries(store.engine)
    by_level = queries.breakdown(DAY, by=check_by(["quantization"]))
    assert [(r.group["quantization"], r.calls, r.total_cost_usd) for r in by_level] == [
        ("fp8", 1, Decimal(5)),
        (None, 1, Decimal(3)),
        ("q4_K_M", 2, Decimal(2)),
    ]
    priority = queries.summary(DAY, parse_where(["service_tier=priority"]))
    assert (priority.calls, priority.total_cost_usd) == (1, Decimal(3))
    assert queries.summary(DAY, Filters(quantization="")).calls == 1
    store.close()
