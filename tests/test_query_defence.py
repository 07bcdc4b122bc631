"""Sums that cannot overflow, a rollup writer that folds in nothing out of range, and sketches
checked before they are merged.

Expected figures are worked out here from the calls as written: money in whole dollars, speeds
from tokens and milliseconds.
"""

from __future__ import annotations

import logging
import math
import struct
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import msgspec.structs
import pytest
import sqlalchemy as sa

from aivitals.query import Filters, Queries, Window
from aivitals.store import model_rollup, schema
from aivitals.store.rollup import merge_rows, rollup_rows
from aivitals.store.sketch import Sketch
from aivitals.store.sql import SqlStore

from .support.helpers import make_call

T0 = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)
DAY = Window(start=T0.replace(hour=0), end=T0.replace(hour=0) + timedelta(days=1))
MAX_USD = Decimal(1_000_000)  # the most one call may cost (docs/store.md, "Limits")


def test_sums_past_64_bits_are_exact(store_target: str) -> None:
    # 10,000 calls at the most a call may cost: $10 billion, 1e19 nano-dollars, past what a
    # 64-bit sum holds (9.2e18). Each rollup row (one model) holds a tenth, which fits.
    store = SqlStore.open(store_target)
    calls = [
        make_call(
            model=f"m{i % 10}",
            user=f"u{i % 2}",
            cost_usd=MAX_USD,
            input_tokens=1_000_000_000,
            started_at=T0 + timedelta(seconds=i % 3600),
        )
        for i in range(10_000)
    ]
    for start in range(0, len(calls), 1000):
        store.write(calls[start : start + 1000], [])
    queries = Queries(store.engine)
    total = Decimal(10_000_000_000)
    summary = queries.summary(DAY)  # from the day rollups
    assert (summary.calls, summary.total_cost_usd) == (10_000, total)
    assert summary.avg_cost_usd == MAX_USD and summary.skipped_rows == 0
    assert summary.input_tokens == 10**13
    by_user = queries.breakdown(DAY, by=["user"])  # from the raw calls
    assert [(r.group["user"], r.total_cost_usd) for r in by_user] == [
        ("u0", total / 2),
        ("u1", total / 2),
    ]
    assert [p.cost_usd for p in queries.timeseries(DAY, step="day")] == [total]
    assert sum(b.cost_usd for b in queries.spend(DAY, step="hour")) == total
    assert queries.summary(DAY, Filters(user="u1")).total_cost_usd == total / 2
    store.close()


def test_the_rollup_writer_folds_in_no_value_out_of_range(
    store_target: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = SqlStore.open(store_target)
    good = make_call(id="good", started_at=T0)
    bad = make_call(id="bad", started_at=T0)
    # As an older version (or a source built around the check) let it through.
    msgspec.structs.force_setattr(bad, "latency_ms", 1e16)
    with caplog.at_level(logging.WARNING, logger="aivitals.store"):
        store.write([good, bad], [])
    assert "1 calls with a value out of range" in caplog.text
    with store.engine.connect() as connection:
        rolled = connection.execute(
            sa.select(schema.rollups.c.granularity, schema.rollups.c.calls)
        ).all()
        stored = connection.scalar(sa.select(sa.func.count()).select_from(schema.calls))
    assert sorted(rolled) == [(60, 1), (3600, 1), (86400, 1)]
    assert stored == 2  # the raw row is kept, and reads leave it out
    queries = Queries(store.engine)
    # A quantisation filter reads the raw calls (the user rollups leave the call out, as the
    # rollups do).
    summary = queries.summary(DAY, Filters(quantization=""))
    assert (summary.calls, summary.skipped_rows) == (1, 1)
    store.delete_calls_before(T0 + timedelta(hours=1))
    summary = queries.summary(DAY)
    assert (summary.calls, summary.skipped_rows) == (1, 0)  # nothing of it left in a sketch
    store.close()


@pytest.mark.parametrize("value", [1e16, 1.7976931348623157e308, float("inf"), float("nan"), -1.0])
def test_a_sketch_refuses_a_value_out_of_range(value: float) -> None:
    with pytest.raises(ValueError, match="from 0 to 86,400,000 ms"):
        Sketch.of([250.0, value])
    assert Sketch.of([0.0, 86_400_000.0]).count == 2


def test_a_rollup_sum_that_would_outgrow_64_bits_keeps_the_stored_row(
    caplog: pytest.LogCaptureFixture,
) -> None:
    [stored] = rollup_rows([make_call(started_at=T0, cost_usd=MAX_USD)], granularities=(60,))
    stored["cost_nusd"] = 2**63 - 1 - 10**14  # a tenth of a call short of the column's top
    [new] = rollup_rows([make_call(started_at=T0, cost_usd=MAX_USD)], granularities=(60,))
    with caplog.at_level(logging.ERROR, logger="aivitals.store"):
        merged = merge_rows(stored, new)
    assert merged == stored
    assert "would outgrow its 64-bit sums" in caplog.text


def test_a_rollup_row_whose_sketch_alone_is_out_of_range_keeps_its_counts(tmp_path: Path) -> None:
    # An older writer summed nine calls of 100 ms and one of 1e8 ms (27.8 hours): the sum is in
    # range for ten calls of at most a day each, the sketch's top bin is not.
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'a.db'}")
    schema.metadata.create_all(engine)
    good = make_call(model="new", latency_ms=300.0, started_at=T0)
    old = [make_call(model="old", latency_ms=100.0, started_at=T0) for _ in range(10)]
    rows = rollup_rows([good, *old], granularities=(86400,))
    gamma = (1 + 0.01) / (1 - 0.01)  # DDSketch's bins at 1% relative accuracy
    low, high = (math.ceil(math.log(v) / math.log(gamma)) for v in (100.0, 1e8))
    counts = [0] * (high - low + 1)
    counts[0], counts[-1] = 9, 1
    for row in rows:
        if row["model"] == "old":
            row["latency_sum_ms"] = 9 * 100.0 + 1e8
            row["latency_sketch"] = struct.pack("<iI", low, 0) + struct.pack(
                f"<{len(counts)}I", *counts
            )
    with engine.begin() as connection:
        connection.execute(schema.rollups.insert(), rows)
        model_rollup.backfill(connection)  # as the upgrade to schema 9 fills them
    summary = Queries(engine).summary(DAY)
    assert summary.calls == 11
    assert summary.skipped_rows == 1
    assert summary.latency_p99_ms == pytest.approx(300.0, rel=0.01)  # the good row's sketch
    assert summary.latency_avg_ms == pytest.approx((300.0 + 900.0 + 1e8) / 11)


def test_a_speed_from_a_generation_too_short_to_measure_is_left_out(store_target: str) -> None:
    # 1e-300 ms of generation is valid at the door, and 100 tokens over it is "infinitely" fast.
    store = SqlStore.open(store_target)
    steady = make_call(latency_ms=2000.0, ttft_ms=1000.0, output_tokens=100, started_at=T0)
    instant = make_call(latency_ms=1e-300, output_tokens=100, started_at=T0, user="u")
    store.write([steady, instant], [])
    queries = Queries(store.engine)
    from_rollups = queries.summary(DAY)
    from_raw = queries.breakdown(DAY, by=["user"])
    assert from_rollups.tokens_per_second == pytest.approx(100.0)  # 100 tokens in 1 s
    assert sum(r.calls for r in from_raw) == 2
    assert [r.tokens_per_second for r in from_raw if r.group["user"] is None] == [
        pytest.approx(100.0)
    ]
    assert [r.tokens_per_second for r in from_raw if r.group["user"] == "u"] == [None]
    store.close()
