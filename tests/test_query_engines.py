"""The same history answers the same on SQLite and PostgreSQL, whatever order its rows went in.

An engine is free to return rows that tie on an ORDER BY in any order (SQLite by rowid,
PostgreSQL by where the row sits in the heap), and a copied store (`aivitals store copy`) holds
its rows in another order than the one they were written in. So every read that keeps the
first N rows must order them completely.
"""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from aivitals.query import Filters, Queries, Window
from aivitals.query.baseline import profiles
from aivitals.store.sql import SqlStore

from .support.drift_history import Change, history
from .support.helpers import make_call
from .support.postgres import StoreTargets

NOW = datetime(2026, 11, 10, 14, 0, tzinfo=UTC)


def test_a_sampled_baseline_reads_the_same_calls_whatever_order_they_were_written_in(
    store_targets: StoreTargets,
) -> None:
    rng = random.Random(5)
    start = NOW - timedelta(hours=2)
    # 40 calls in each of 30 milliseconds: ties on the start time that a sample cuts through.
    calls = [
        make_call(
            started_at=start + timedelta(minutes=4 * (i // 40)),
            output_tokens=rng.randrange(1, 2000),
        )
        for i in range(1200)
    ]
    window = Window(start, start + timedelta(hours=2))
    samples = []
    for order in (calls, calls[::-1]):
        store = SqlStore.open(store_targets())
        try:
            for offset in range(0, len(order), 100):
                store.write(order[offset : offset + 100], [])
            with store.engine.connect() as connection:
                found = profiles(connection, [window], Filters(), raw_cap=300, scores=False)
        finally:
            store.close()
        (profile,) = found.values()
        assert profile.sampled
        samples.append(np.sort(profile.values("output_tokens")))
    assert len(samples[0]) < len(calls)  # a sample, not every call
    np.testing.assert_array_equal(samples[0], samples[1])


def rounded(value: Any) -> Any:
    """Floats to 9 significant digits: float sums may differ in the last bits between engines."""
    if isinstance(value, float):
        return float(f"{value:.9g}")
    if isinstance(value, dict):
        return {key: rounded(v) for key, v in value.items()}
    if isinstance(value, list | tuple):
        return [rounded(v) for v in value]
    return value


def test_drift_on_postgresql_answers_what_sqlite_answers(
    tmp_path: Path, postgresql_db_url: str
) -> None:
    step = NOW - timedelta(hours=1)
    changes = (
        Change(step, model="m-a", latency_factor=1.5),
        Change(step, model="m-b", refusal_rate=0.08),
    )
    answers = []
    for target in (str(tmp_path / "aivitals.db"), postgresql_db_url):
        store = SqlStore.open(target)
        try:
            history(store, now=NOW, seed=21, changes=changes, days=3, per_hour=80)
            found = Queries(store.engine).drift(
                Window(step, NOW), Filters(), ("model",), baseline="2d"
            )
        finally:
            store.close()
        answers.append(rounded(dataclasses.asdict(found)))
    assert answers[0]["results"], "the drift compared something"
    assert answers[0] == answers[1]
