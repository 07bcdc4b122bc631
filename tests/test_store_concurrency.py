"""Two processes writing one SQLite file at once: every call is kept and counted once."""

from __future__ import annotations

import multiprocessing
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy

from aivitals.model import Call
from aivitals.store import schema
from aivitals.store.rows import to_nusd
from aivitals.store.sketch import merge_all
from aivitals.store.sql import SqlStore

PROCESSES = 2
BATCHES = 20
BATCH_SIZE = 250
START = datetime(2025, 3, 9, 12, 0, tzinfo=UTC)


def calls_of(writer: int) -> list[Call]:
    """Both writers use the same models, features and minutes: their rollup rows collide."""
    rng = random.Random(writer)
    return [
        Call(
            provider="openai",
            model=rng.choice(["gpt-4o", "gpt-4o-mini"]),
            feature=rng.choice(["search", "chat"]),
            latency_ms=rng.uniform(50, 5000),
            started_at=START + timedelta(milliseconds=rng.randrange(3 * 60_000)),
            input_tokens=100,
            output_tokens=10,
            cost_usd=Decimal(rng.randrange(1, 10**6)) / 10**10,
        )
        for _ in range(BATCHES * BATCH_SIZE)
    ]


def write_all(path: str, writer: int, start: Any) -> None:
    """One writer process: open the store, wait for the other, then write every batch."""
    calls = calls_of(writer)
    store = SqlStore.open(path)
    start.wait(30)
    try:
        for offset in range(0, len(calls), BATCH_SIZE):
            store.write(calls[offset : offset + BATCH_SIZE], [])
    finally:
        store.close()


def test_two_processes_writing_one_file_lose_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.db")
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(PROCESSES)
    workers = [
        context.Process(target=write_all, args=(path, writer, start)) for writer in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert [worker.exitcode for worker in workers] == [0] * PROCESSES

    total = PROCESSES * BATCHES * BATCH_SIZE
    expected_cost = sum(
        to_nusd(call.cost_usd) or 0 for writer in range(PROCESSES) for call in calls_of(writer)
    )
    store = SqlStore.open(path)
    try:
        with store.engine.connect() as connection:
            raw = connection.scalar(sqlalchemy.select(sqlalchemy.func.count(schema.calls.c.id)))
            table = schema.rollups
            rows = connection.execute(
                sqlalchemy.select(
                    table.c.granularity, table.c.calls, table.c.cost_nusd, table.c.latency_sketch
                )
            ).all()
    finally:
        store.close()
    assert raw == total
    for granularity in schema.GRANULARITIES:
        mine = [row for row in rows if row.granularity == granularity]
        assert sum(row.calls for row in mine) == total
        assert sum(row.cost_nusd for row in mine) == expected_cost
        assert merge_all(row.latency_sketch for row in mine).count == total
