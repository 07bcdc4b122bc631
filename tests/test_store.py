"""The store's contract: what is written reads back exactly, and rollups agree with the raw rows."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy

from aivitals.model import Call, Score
from aivitals.store import schema
from aivitals.store.bulk import BulkInsert
from aivitals.store.rollup import key_values
from aivitals.store.rows import row_call, row_score, to_nusd
from aivitals.store.sketch import merge_all
from aivitals.store.sql import SqlStore

from .support.helpers import make_call

T0 = datetime(2025, 3, 9, 23, 58, 30, tzinfo=UTC)  # close to midnight: batches cross a day


@pytest.fixture
def store(store_target: str) -> Iterator[SqlStore]:
    """Each store engine the contract runs against: SQLite, and a fresh PostgreSQL database."""
    opened = SqlStore.open(store_target)
    yield opened
    opened.close()


def rows_of(store: SqlStore, table: sqlalchemy.Table) -> list[dict[str, Any]]:
    with store.engine.connect() as connection:
        return [dict(row) for row in connection.execute(sqlalchemy.select(table)).mappings()]


def count(store: SqlStore, table: sqlalchemy.Table) -> int:
    with store.engine.connect() as connection:
        total = connection.scalar(sqlalchemy.select(sqlalchemy.func.count()).select_from(table))
    assert total is not None
    return total


def rollup_totals(store: SqlStore, column: str) -> dict[int, int]:
    table = schema.rollups
    with store.engine.connect() as connection:
        rows = connection.execute(
            sqlalchemy.select(table.c.granularity, sqlalchemy.func.sum(table.c[column])).group_by(
                table.c.granularity
            )
        )
        return {granularity: int(total) for granularity, total in rows}


def varied_calls(n: int, *, seed: int, start: datetime = T0) -> list[Call]:
    rng = random.Random(seed)
    calls = []
    for i in range(n):
        failed = rng.random() < 0.1
        output = 0 if failed else rng.randint(1, 500)
        model = rng.choice(["gpt-4o", "gpt-4o-mini"])
        feature = rng.choice(["search", "chat", None])
        team = rng.choice(["core", None])
        latency_ms = rng.lognormvariate(6, 1)
        calls.append(
            make_call(
                model=model,
                feature=feature,
                team=team,
                latency_ms=latency_ms,
                # The first token is part of the call: never later than its end.
                ttft_ms=None if failed else min(rng.lognormvariate(5, 0.5), latency_ms),
                started_at=start + timedelta(milliseconds=rng.randrange(6 * 60_000)),
                output_tokens=output,
                status="error" if failed else "ok",
                error_type="timeout" if failed else None,
                cost_usd=None if i % 7 == 0 else Decimal(rng.randrange(1, 10**7)) / 10**11,
                cache=rng.choice(["hit", "miss", None]),
            )
        )
    return calls


def test_calls_and_scores_read_back_exactly(store: SqlStore) -> None:
    full = Call(
        provider="anthropic",
        model="claude-3-7-sonnet-latest",
        latency_ms=1234.5,
        trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
        span_id="00f067aa0ba902b7",
        parent_span_id="00f067aa0ba902b8",
        started_at=datetime(2025, 3, 9, 12, 0, 0, 123_000, tzinfo=UTC),
        ttft_ms=210.25,
        response_model="claude-3-7-sonnet-20250219",
        input_tokens=5000,
        output_tokens=700,
        cached_input_tokens=4000,
        cache_write_tokens=500,
        reasoning_tokens=200,
        tokens_estimated=True,
        cost_usd=Decimal("0.0123456789012345"),
        input_cost_usd=Decimal("0.0018"),
        output_cost_usd=Decimal("1E-7"),
        price_source="genai-prices 0.0.40",
        status="error",
        error_type="rate_limit",
        error_message="429: slow down",
        http_status=429,
        finish_reason="stop",
        cache="miss",
        cache_level="semantic",
        context_window=200_000,
        user="u-42",
        feature="search",
        team="core",
        endpoint="/v1/ask",
        prompt_version="v3",
        environment="prod",
        tags={"region": "eu", "tier": "gold"},
    )
    bare = make_call(started_at=datetime(2025, 3, 9, 12, 0, 0, 999_000, tzinfo=UTC))
    score = Score(
        call_id=full.id,
        name="faithfulness",
        value=4.0,
        min_value=1.0,
        max_value=5.0,
        comment="fine",
        created_at=datetime(2025, 3, 9, 12, 1, 0, 5_000, tzinfo=UTC),
        model="claude-3-7-sonnet-latest",
        feature="search",
    )
    store.write([full, bare], [score])

    stored = {call.id: call for call in map(row_call, rows_of(store, schema.calls))}
    assert stored == {full.id: full, bare.id: bare}
    assert stored[full.id].cost_usd == Decimal("0.0123456789012345")
    assert [row_score(row) for row in rows_of(store, schema.scores)] == [score]


def test_rollups_hand_checked(store: SqlStore) -> None:
    minute = datetime(2025, 3, 9, 10, 15, tzinfo=UTC)
    store.write(
        [
            make_call(started_at=minute, cost_usd=Decimal("0.001"), latency_ms=100.0),
            # 1.5 nano-dollars rounds half-even to 2.
            make_call(started_at=minute + timedelta(seconds=59), cost_usd=Decimal("1.5E-9")),
            make_call(
                started_at=minute + timedelta(seconds=30), status="error", error_type="other"
            ),
        ],
        [],
    )
    store.write([make_call(started_at=minute + timedelta(seconds=1), cost_usd=Decimal("0.5"))], [])
    ok = {
        row["granularity"]: row for row in rows_of(store, schema.rollups) if row["status"] == "ok"
    }
    assert sorted(ok) == [60, 3600, 86400]
    for granularity, row in ok.items():
        assert row["bucket_start"] == int(minute.timestamp()) // granularity * granularity
        assert row["calls"] == 3
        assert row["unpriced"] == 0
        assert row["cost_nusd"] == 1_000_000 + 2 + 500_000_000
        assert row["input_tokens"] == 3000
    assert rollup_totals(store, "calls") == {60: 4, 3600: 4, 86400: 4}
    assert rollup_totals(store, "unpriced") == {60: 1, 3600: 1, 86400: 1}
    assert rollup_totals(store, "errors") == {60: 1, 3600: 1, 86400: 1}


def test_rollups_equal_sums_over_raw_rows(store: SqlStore) -> None:
    calls = varied_calls(3000, seed=1)
    sizes = [1, 499, 1000, 250, 750, 500]
    offset = 0
    for size in sizes:
        store.write(calls[offset : offset + size], [])
        offset += size
    assert offset == len(calls)

    expected_cost = sum(to_nusd(call.cost_usd) or 0 for call in calls)
    with store.engine.connect() as connection:
        raw_cost = connection.scalar(
            sqlalchemy.select(sqlalchemy.func.sum(schema.calls.c.cost_nusd))
        )
    assert raw_cost == expected_cost
    assert rollup_totals(store, "calls") == {60: 3000, 3600: 3000, 86400: 3000}
    assert rollup_totals(store, "cost_nusd") == dict.fromkeys((60, 3600, 86400), expected_cost)
    assert rollup_totals(store, "output_tokens") == dict.fromkeys(
        (60, 3600, 86400), sum(call.output_tokens for call in calls)
    )
    assert rollup_totals(store, "cache_hits") == dict.fromkeys(
        (60, 3600, 86400), sum(call.cache == "hit" for call in calls)
    )

    # Every (granularity, bucket, key) row counts exactly the calls that fall in it.
    expected: Counter[tuple[Any, ...]] = Counter()
    for call in calls:
        seconds = int(call.started_at.timestamp())
        for granularity in (60, 3600, 86400):
            expected[(granularity, seconds // granularity * granularity, *key_values(call))] += 1
    rollups = rows_of(store, schema.rollups)
    stored = {
        (row["granularity"], row["bucket_start"], *(row[k] for k in schema.ROLLUP_KEYS)): row[
            "calls"
        ]
        for row in rollups
    }
    assert stored == dict(expected)
    assert len({row["bucket_start"] for row in rollups if row["granularity"] == 86400}) == 2

    latencies = np.array([call.latency_ms for call in calls])
    for granularity in (60, 3600, 86400):
        sketch = merge_all(
            row["latency_sketch"] for row in rollups if row["granularity"] == granularity
        )
        assert sketch.count == len(calls)
        for q in (0.5, 0.9, 0.95, 0.99):
            exact = float(np.percentile(latencies, q * 100, method="inverted_cdf"))
            estimate = sketch.quantile(q)
            assert estimate is not None
            assert abs(estimate - exact) / exact <= 0.01


def test_a_retried_batch_is_not_counted_twice(store: SqlStore) -> None:
    calls = varied_calls(600, seed=2)
    store.write(calls[:400], [])
    before = rows_of(store, schema.rollups)
    store.write(calls[:400], [])  # the same batch again, as after a lost acknowledgement
    assert rows_of(store, schema.rollups) == before
    store.write(calls[200:] + calls[500:], [])  # overlaps the first, and repeats itself
    assert count(store, schema.calls) == 600
    assert rollup_totals(store, "calls") == {60: 600, 3600: 600, 86400: 600}
    expected_cost = sum(to_nusd(call.cost_usd) or 0 for call in calls)
    assert rollup_totals(store, "cost_nusd") == dict.fromkeys((60, 3600, 86400), expected_cost)


def test_a_retried_score_is_stored_once(store: SqlStore) -> None:
    score = Score(call_id="c1", name="helpful", value=0.5)
    store.write([], [score])
    store.write([], [score])
    assert count(store, schema.scores) == 1


def test_retention_deletes_old_calls_and_their_scores_but_keeps_rollups(store: SqlStore) -> None:
    old = varied_calls(2500, seed=3, start=datetime(2025, 1, 1, tzinfo=UTC))
    new = varied_calls(300, seed=4, start=datetime(2025, 3, 1, tzinfo=UTC))
    scores = [
        Score(call_id=old[0].id, name="helpful", value=1.0, created_at=old[0].started_at),
        Score(call_id=new[0].id, name="helpful", value=1.0, created_at=new[0].started_at),
        # Its call was never stored, and it is as old as the deleted calls.
        Score(call_id="gone", name="helpful", value=0.0, created_at=old[0].started_at),
    ]
    for start in range(0, len(old), 1000):
        store.write(old[start : start + 1000], [])
    store.write(new, scores)
    rollups = rows_of(store, schema.rollups)

    cutoff = datetime(2025, 2, 1, tzinfo=UTC)
    assert store.delete_calls_before(cutoff, max_rows=1200) == 1200
    assert store.delete_calls_before(cutoff) == 1300
    assert store.delete_calls_before(cutoff) == 0

    assert {row["id"] for row in rows_of(store, schema.calls)} == {call.id for call in new}
    assert [row["call_id"] for row in rows_of(store, schema.scores)] == [new[0].id]
    assert rows_of(store, schema.rollups) == rollups


def test_ping_answers(store: SqlStore) -> None:
    store.ping()
    assert repr(store).startswith("SqlStore(")


def test_bulk_insert_leaves_types_that_need_conversion_to_sqlalchemy(tmp_path: Path) -> None:
    table = sqlalchemy.Table(
        "events",
        sqlalchemy.MetaData(),
        sqlalchemy.Column("name", sqlalchemy.String(20)),
        sqlalchemy.Column("at", sqlalchemy.DateTime),  # SQLite needs SQLAlchemy to store these
    )
    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'events.db'}")
    table.create(engine)
    bulk = BulkInsert(sqlalchemy.insert(table), engine.dialect)
    assert not bulk.direct
    moment = datetime(2025, 3, 9, 12, 0, 0, 5)
    with engine.begin() as connection:
        bulk.execute(connection, [{"name": "a", "at": moment}, {"name": "b", "at": moment}])
        bulk.execute(connection, [])
    with engine.connect() as connection:
        assert connection.execute(sqlalchemy.select(table)).all() == [("a", moment), ("b", moment)]
    engine.dispose()
