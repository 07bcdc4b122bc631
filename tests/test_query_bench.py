"""The query benchmark's bulk store must be the store the writer would leave, or its figures lie."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
import sqlalchemy as sa

from aivitals.query import Queries, Window
from aivitals.store import model_rollup, rollup, rows, schema, user_rollup

from .test_query_store import reference


def _bench() -> ModuleType:
    path = Path(__file__).parents[1] / "benchmarks" / "bench_queries.py"
    spec = importlib.util.spec_from_file_location("bench_queries", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_populate_writes_the_rollups_the_writer_would(tmp_path: Path) -> None:
    bench = _bench()
    path = tmp_path / "bench.db"
    bench.populate(path, 3000, seed=7)
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.connect() as connection:
        calls = [rows.row_call(row) for row in connection.execute(sa.select(schema.calls))]
        stored = [dict(row._mapping) for row in connection.execute(sa.select(schema.rollups))]
        scores = [rows.row_score(row) for row in connection.execute(sa.select(schema.scores))]
    assert len(calls) == 3000
    assert 0 < len(scores) < 300
    expected = {rollup.rollup_key(row): row for row in rollup.rollup_rows(calls)}
    assert len(stored) == len(expected)
    for row in stored:
        want = expected[rollup.rollup_key(row)]
        for name, value in want.items():
            if isinstance(value, float):
                assert row[name] == pytest.approx(value, rel=1e-9), name
            else:
                assert row[name] == value, name

    # The user rollups (schema 8) the writer would keep, from the same calls: the backfill's.
    with engine.connect() as connection:
        users = [dict(row._mapping) for row in connection.execute(sa.select(schema.user_rollups))]
    keyed = {tuple(row[k] for k in user_rollup.KEY_COLUMNS): row for row in users}
    written = user_rollup.user_rows(calls)
    assert len(keyed) == len(written)
    for want in written:
        row = keyed[tuple(want[k] for k in user_rollup.KEY_COLUMNS)]
        for name, value in want.items():
            if isinstance(value, float):
                assert row[name] == pytest.approx(value, rel=1e-9), name
            else:
                assert row[name] == value, name

    # And the model rollups (schema 9), filled from those rollups: as the writer folds them.
    with engine.connect() as connection:
        models = [dict(row._mapping) for row in connection.execute(sa.select(schema.model_rollups))]
    keyed = {tuple(row[k] for k in model_rollup.MODELS.key_columns): row for row in models}
    written = model_rollup.model_rows(calls)
    assert len(keyed) == len(written)
    for want in written:
        row = keyed[tuple(want[k] for k in model_rollup.MODELS.key_columns)]
        for name, value in want.items():
            if isinstance(value, float):
                assert row[name] == pytest.approx(value, rel=1e-9), name
            else:
                assert row[name] == value, name

    window = Window(start=bench.START, end=bench.START + bench.timedelta(days=30))
    summary = Queries(engine).summary(window)
    assert summary.calls == 3000
    assert summary.total_cost_usd == reference(calls)["total_cost_usd"]
    figures = bench.time_summary(path, runs=1)
    assert figures["whole range: calls"] == 3000
    assert figures["last 24h: percentiles"] == "sketch"
    engine.dispose()
