"""Every older schema is brought forward on both engines (SQLite and PostgreSQL), rows kept.

An older store is made from a current one by undoing what each migration step adds (its tables
and columns, dropped with plain SQL both engines read) and writing the older version into
``meta``; opening it must run the steps and give back the same rows and rollups.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from aivitals.model import Score
from aivitals.store import migrations, schema
from aivitals.store.sql import SqlStore

from .support.helpers import make_call

T0 = datetime(2026, 11, 2, tzinfo=UTC)

# What each version added, undone newest first (migrations.STEPS, spelled out here on purpose:
# the test must not take the code's word for what a step does).
ADDED: dict[int, tuple[tuple[str, ...], tuple[tuple[str, str], ...]]] = {
    9: (("model_rollups",), ()),
    8: (("user_rollups", "user_score_rollups"), ()),
    7: (("leases", "lease_inbox"), ()),
    6: (("score_rollups",), ()),
    5: (("baselines",), ()),
    4: (("outcomes", "contents"), ()),
    3: (
        (),
        (
            ("calls", "cache_write_1h_tokens"),
            ("calls", "server_tool_uses"),
            ("calls", "service_tier"),
            ("calls", "quantization"),
        ),
    ),
    2: ((), (("calls", "saved_usd"),)),
}


def rows(connection: sa.Connection, table: sa.Table) -> list[tuple[Any, ...]]:
    found = connection.execute(sa.select(table)).all()
    return sorted(tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in found)


def test_the_undone_steps_are_every_step() -> None:
    assert sorted(ADDED) == [version for version, _ in migrations.STEPS]


@pytest.mark.parametrize("version", [1, 3, 5, 6, 7, 8])
def test_an_older_store_is_brought_forward_keeping_its_rows(
    store_target: str, version: int
) -> None:
    rng = random.Random(version)
    calls = [
        make_call(
            started_at=T0 + timedelta(seconds=rng.randrange(3 * 86400)),
            model=rng.choice(["gpt-4o", "gpt-4o-mini"]),
            latency_ms=rng.uniform(100, 3000),
        )
        for _ in range(300)
    ]
    scores = [Score(call_id=c.id, name="relevance", value=rng.randrange(9) / 8) for c in calls[::3]]
    store = SqlStore.open(store_target)
    store.write(calls, scores)
    with store.engine.connect() as connection:
        before = {t: rows(connection, schema.metadata.tables[t]) for t in ("rollups", "scores")}
        before["score_rollups"] = rows(connection, schema.score_rollups)
        before["user_score_rollups"] = rows(connection, schema.user_score_rollups)
        kept = rows(connection, schema.user_rollups)
        kept_models = rows(connection, schema.model_rollups)
    with store.engine.begin() as connection:
        for undone in sorted((v for v in ADDED if v > version), reverse=True):
            tables, columns = ADDED[undone]
            for table in tables:
                connection.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
            for table, column in columns:
                connection.execute(sa.text(f"ALTER TABLE {table} DROP COLUMN {column}"))
        connection.execute(
            schema.meta.update()
            .where(schema.meta.c.key == "schema_version")
            .values(value=str(version))
        )
    store.close()

    upgraded = SqlStore.open(store_target)
    try:
        with upgraded.engine.connect() as connection:
            assert migrations.read_version(connection, where="test") == schema.SCHEMA_VERSION
            names = set(sa.inspect(connection).get_table_names())
            assert {t.name for t in schema.metadata.sorted_tables} <= names
            after = {t: rows(connection, schema.metadata.tables[t]) for t in before}
            stored = connection.scalar(sa.select(sa.func.count()).select_from(schema.calls))
            rebuilt = rows(connection, schema.user_rollups)
            rebuilt_models = rows(connection, schema.model_rollups)
        # The upgraded store takes new calls with every column.
        upgraded.write([make_call(started_at=T0, service_tier="flex")], [])
    finally:
        upgraded.close()
    assert stored == len(calls)
    assert after == before  # rollups kept; score rollups rebuilt from the scores to the bit
    # User rollups rebuilt from the calls: counts, sums and sketches as the writer kept them;
    # the float sums added in another order, so to rounding.
    # Model rollups (schema 9) rebuilt from the rollups the same way, nothing skipped.
    for rollup_table, new_rows, old_rows in (
        (schema.user_rollups, rebuilt, kept),
        (schema.model_rollups, rebuilt_models, kept_models),
    ):
        assert len(new_rows) == len(old_rows) > 0
        floats = [i for i, c in enumerate(rollup_table.columns) if isinstance(c.type, sa.Float)]
        for new, old in zip(new_rows, old_rows, strict=True):
            assert [v for i, v in enumerate(new) if i not in floats] == [
                v for i, v in enumerate(old) if i not in floats
            ]
            assert [new[i] for i in floats] == pytest.approx([old[i] for i in floats], rel=1e-12)
    assert {row[-2:] for row in rebuilt_models} == {(0, 0)}
