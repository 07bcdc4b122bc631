"""Several processes writing one store at once (a SQLite file, or one PostgreSQL database through
a SqlStore each): every call is kept once, and every rollup row is the exact sum of its calls."""

from __future__ import annotations

import multiprocessing
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy

from aivitals.model import Call, Score
from aivitals.store import schema
from aivitals.store.sketch import Sketch
from aivitals.store.sql import SqlStore

PROCESSES = 3
BATCHES = 20
BATCH_SIZE = 200
START = datetime(2025, 3, 9, 12, 0, tzinfo=UTC)


def calls_of(writer: int) -> list[Call]:
    """Every writer uses the same models, features and minutes: their rollup rows collide."""
    rng = random.Random(writer)
    return [
        Call(
            provider="openai",
            model=rng.choice(["gpt-4o", "gpt-4o-mini"]),
            feature=rng.choice(["search", "chat"]),
            latency_ms=rng.uniform(50, 5000),
            started_at=START + timedelta(milliseconds=rng.randrange(3 * 60_000)),
            input_tokens=rng.randrange(1, 1000),
            output_tokens=10,
            cost_usd=Decimal(rng.randrange(1, 10**6)) / 10**10,
        )
        for _ in range(BATCHES * BATCH_SIZE)
    ]


def scores_of(calls: list[Call]) -> list[Score]:
    # Eighths: exact in binary, so float sums do not depend on the order writers add them in.
    return [
        Score(call_id=call.id, name="relevance", value=(i % 9) / 8) for i, call in enumerate(calls)
    ]


def write_all(target: str, writer: int, start: Any) -> None:
    """One writer process: its own SqlStore; waits for the others, then writes every batch.

    Each batch carries its calls and the scores of the previous batch's calls (scores that
    arrive after their call, as an evaluator's do).
    """
    calls = calls_of(writer)
    store = SqlStore.open(target)
    start.wait(60)
    try:
        previous: list[Call] = []
        for offset in range(0, len(calls), BATCH_SIZE):
            batch = calls[offset : offset + BATCH_SIZE]
            store.write(batch, scores_of(previous))
            previous = batch
        store.write([], scores_of(previous))
    finally:
        store.close()


def test_concurrent_writers_lose_nothing_and_rollups_equal_the_raw_rows(store_target: str) -> None:
    SqlStore.open(store_target).close()  # the schema once, before the race
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(PROCESSES)
    workers = [
        context.Process(target=write_all, args=(store_target, writer, start))
        for writer in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(180)
    assert [worker.exitcode for worker in workers] == [0] * PROCESSES

    store = SqlStore.open(store_target)
    try:
        with store.engine.connect() as connection:
            calls = schema.calls.c
            raw = connection.execute(
                sqlalchemy.select(
                    calls.id,
                    calls.started_ms,
                    calls.model,
                    calls.feature,
                    calls.cost_nusd,
                    calls.input_tokens,
                    calls.latency_ms,
                )
            ).all()
            rollups = connection.execute(sqlalchemy.select(schema.rollups)).mappings().all()
            scored = connection.execute(
                sqlalchemy.select(schema.scores.c.call_id, schema.scores.c.value)
            ).all()
            score_rollups = (
                connection.execute(sqlalchemy.select(schema.score_rollups)).mappings().all()
            )
    finally:
        store.close()

    written = [call for writer in range(PROCESSES) for call in calls_of(writer)]
    assert len(raw) == len(written) == len({row.id for row in raw})
    assert len(scored) == len(written)

    # What each rollup row must hold, summed by the test from the raw rows read back.
    expected: dict[tuple[Any, ...], list[Any]] = defaultdict(lambda: [0, 0, 0, []])
    started = {}
    for row in raw:
        started[row.id] = row
        for granularity in schema.GRANULARITIES:
            seconds = row.started_ms // 1000
            key = (granularity, seconds - seconds % granularity, row.model, row.feature)
            sums = expected[key]
            sums[0] += 1
            sums[1] += row.cost_nusd
            sums[2] += row.input_tokens
            sums[3].append(row.latency_ms)
    assert {
        (r["granularity"], r["bucket_start"], r["model"], r["feature"]) for r in rollups
    } == set(expected)
    for stored in rollups:
        key = (stored["granularity"], stored["bucket_start"], stored["model"], stored["feature"])
        n, cost, tokens, latencies = expected[key]
        assert (stored["calls"], stored["cost_nusd"], stored["input_tokens"]) == (n, cost, tokens)
        assert Sketch.from_bytes(stored["latency_sketch"]).count == n
        # Floats added in the writers' order: equal up to rounding.
        assert stored["latency_sum_ms"] == pytest.approx(sum(latencies), rel=1e-12)

    score_expected: dict[tuple[Any, ...], list[float]] = defaultdict(lambda: [0, 0.0])
    for call_id, value in scored:
        row = started[call_id]
        for granularity in schema.GRANULARITIES:
            seconds = row.started_ms // 1000
            key = (granularity, seconds - seconds % granularity, row.model, row.feature)
            score_expected[key][0] += 1
            score_expected[key][1] += value
    assert len(score_rollups) == len(score_expected)
    for stored in score_rollups:
        key = (stored["granularity"], stored["bucket_start"], stored["model"], stored["feature"])
        assert [stored["value_count"], stored["value_sum"]] == score_expected[key]
