"""The write path's few-statements-a-batch shape loses nothing: values to the bit, rollups exact.

On SQLite calls go in many rows to a statement and rollups are read back as one JSON text a
batch (`aivitals.store.bulk`, `aivitals.store.rollup_upsert`); on PostgreSQL the same writes
go their own way. Both engines are checked against values written out here, not computed by
the code under test.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from aivitals.model import Score
from aivitals.store import bounds, bulk, rollup_upsert, schema
from aivitals.store.bulk import BulkInsert
from aivitals.store.rollup_upsert import RollupUpsert
from aivitals.store.rows import CALL_COLUMNS, row_call
from aivitals.store.sketch import Sketch
from aivitals.store.sql import SqlStore
from tests.support.helpers import make_call

T0 = datetime(2025, 3, 4, 5, 6, 7, 890000, tzinfo=UTC)


def awkward_calls(n: int, *, start: datetime = T0) -> list[Any]:
    """``n`` calls whose values a lossy path would change: floats that need 17 digits, the
    largest token counts, NULLs, non-ASCII text and tags, one cent in nano-dollars."""
    floats = (0.1 + 0.2, 1 / 3, 5e-324, 86_399_999.99999999, 2.0**-30, 123.456789012345678)
    calls = []
    for i in range(n):
        latency = floats[i % len(floats)]
        calls.append(
            make_call(
                started_at=start + timedelta(milliseconds=i),
                latency_ms=latency,
                ttft_ms=None if i % 2 else latency / 3,
                input_tokens=bounds.MAX_TOKENS if i % 7 == 0 else i,
                output_tokens=i % 5,
                cost_usd=None if i % 3 == 0 else Decimal("0.000000001") * (i + 1),
                feature=None if i % 4 == 0 else f"résumé-{i % 3} ✓",
                user="ユーザー" if i % 5 == 0 else None,
                tags={"région": "eu-west", "emoji": "🦊"} if i % 2 else {},
            )
        )
    return calls


def stored_calls(store: SqlStore) -> dict[str, Any]:
    with store.engine.connect() as connection:
        rows = connection.execute(sa.select(schema.calls)).mappings().all()
    return {row["id"]: row_call(row) for row in rows}


def test_calls_round_trip_to_the_bit_in_batches_of_every_shape(store_target: str) -> None:
    store = SqlStore.open(store_target)
    # 1, 500 (the recorder's batch) and 1,201 (more than a statement holds): every chunking.
    batches = [awkward_calls(1), awkward_calls(500, start=T0 + timedelta(hours=1))]
    batches.append(awkward_calls(1201, start=T0 + timedelta(hours=2)))
    try:
        for batch in batches:
            assert len(store.write(batch, [])) == len(batch)
        stored = stored_calls(store)
    finally:
        store.close()
    every = [call for batch in batches for call in batch]
    assert len(stored) == len(every)
    for call in every:
        back = stored[call.id]
        assert back.latency_ms.hex() == call.latency_ms.hex()
        assert back == call


def test_a_resent_call_and_a_duplicate_within_a_batch_are_stored_once(store_target: str) -> None:
    store = SqlStore.open(store_target)
    first, second = awkward_calls(2)
    try:
        assert [c.id for c in store.write([first], [])] == [first.id]
        again = store.write([first, second, second], [])
        stored = stored_calls(store)
    finally:
        store.close()
    assert [c.id for c in again] == [second.id]
    assert sorted(stored) == sorted([first.id, second.id])


def rollup_of(store: SqlStore, granularity: int, model: str) -> dict[str, Any]:
    table = schema.rollups
    with store.engine.connect() as connection:
        [row] = connection.execute(
            sa.select(table).where(table.c.granularity == granularity, table.c.model == model)
        ).mappings()
    return dict(row)


def test_rollup_sums_over_several_batches_are_exact(store_target: str) -> None:
    store = SqlStore.open(store_target)
    # Three batches into one minute: each batch's sum in call order, then the batches in turn.
    batches = [[0.1, 0.2, 0.7], [1e-3, 1 / 3], [86_399_999.5, 0.30000000000000004]]
    cost = Decimal("0.000000123")
    try:
        for index, latencies in enumerate(batches):
            calls = [
                make_call(
                    model="m",
                    started_at=T0 + timedelta(milliseconds=10 * index + k),
                    latency_ms=latency,
                    cost_usd=cost,
                    input_tokens=bounds.MAX_TOKENS,
                )
                for k, latency in enumerate(latencies)
            ]
            store.write(calls, [])
        row = rollup_of(store, 60, "m")
    finally:
        store.close()
    expected = ((0.1 + 0.2) + 0.7) + (1e-3 + 1 / 3)
    expected += 86_399_999.5 + 0.30000000000000004
    assert row["latency_sum_ms"].hex() == expected.hex()
    assert row["calls"] == 7
    assert row["cost_nusd"] == 7 * 123
    assert row["input_tokens"] == 7 * bounds.MAX_TOKENS
    sketch = Sketch.from_bytes(row["latency_sketch"])
    assert sketch.count == 7
    assert sketch.to_bytes() == Sketch.of([v for batch in batches for v in batch]).to_bytes()


def test_keys_with_text_json_escapes_merge_into_their_stored_row(store_target: str) -> None:
    store = SqlStore.open(store_target)
    feature = 'quote " backslash \\ tab \t bell \x07 🦊 \u2028'
    try:
        for index in range(3):
            call = make_call(model="m", feature=feature, started_at=T0 + timedelta(seconds=index))
            store.write([call], [])
        row = rollup_of(store, 60, "m")
    finally:
        store.close()
    assert row["feature"] == feature
    assert row["calls"] == 3
    assert Sketch.from_bytes(row["latency_sketch"]).count == 3


def test_sqlite_writes_a_batch_in_a_handful_of_statements(tmp_path: Path) -> None:
    # Each driver execution gives the GIL up; a row each (executemany) made a busy
    # application's store fall behind. Counted, not timed.
    store = SqlStore.open(tmp_path / "a.db")
    executions: list[int] = []

    def count(*args: Any) -> None:
        executions.append(len(args[3]) if args[5] else 1)

    sa.event.listen(store.engine, "before_cursor_execute", count)
    try:
        store.write(awkward_calls(500), [])
    finally:
        store.close()
    assert 0 < sum(executions) <= 20


def test_bulk_insert_splits_rows_into_statements_sqlite_can_take(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'b.db'}")
    schema.metadata.create_all(engine, tables=[schema.calls])
    bulk = BulkInsert(sa.insert(schema.calls), engine.dialect, columns=CALL_COLUMNS)
    # 43 columns a row: 762 rows is the most under SQLite's 32,766 parameters.
    assert bulk.statement_sizes(1601) == [762, 762, 77]
    assert math.prod(bulk.statement_sizes(0) or [1]) == 1
    postgres = BulkInsert(
        sa.insert(schema.calls), sa.create_engine("postgresql://").dialect, columns=CALL_COLUMNS
    )
    assert postgres.statement_sizes(3) == [1, 1, 1]
    engine.dispose()


def a_rollup_row() -> dict[str, Any]:
    row: dict[str, Any] = {name: "" for name in schema.ROLLUP_KEYS}
    row.update(
        granularity=60,
        bucket_start=0,
        **{name: 1 for name in ("calls", "errors", "cancelled", "unpriced", "cost_nusd")},
        **{name: 0 for name in ("input_tokens", "output_tokens", "cached_input_tokens")},
        **{name: 0 for name in ("cache_write_tokens", "reasoning_tokens", "cache_hits")},
        cache_lookups=0,
        latency_sum_ms=0.1,
        ttft_count=0,
        ttft_sum_ms=0.0,
        speed_count=0,
        speed_sum=0.0,
        latency_sketch=Sketch.of([0.1]).to_bytes(),
        ttft_sketch=Sketch.of([]).to_bytes(),
    )
    return row


def sqlite_upsert(path: Path) -> tuple[sa.Engine, RollupUpsert]:
    engine = sa.create_engine(f"sqlite:///{path}")
    schema.metadata.create_all(engine, tables=[schema.rollups])
    keys = ("granularity", "bucket_start", *schema.ROLLUP_KEYS)
    return engine, RollupUpsert(schema.rollups, keys, engine.dialect)


def test_the_rollup_upsert_adds_sums_in_sql_and_keeps_a_row_that_would_overflow(
    tmp_path: Path,
) -> None:
    engine, upsert = sqlite_upsert(tmp_path / "c.db")
    row = a_rollup_row()
    with engine.begin() as connection:
        upsert.fold(connection, [row])
        upsert.fold(connection, [{**row, "latency_sum_ms": 0.2}])
        upsert.fold(connection, [{**row, "cost_nusd": bounds.INT64_MAX}])  # would overflow
        stored = connection.execute(sa.select(schema.rollups)).mappings().one()
    engine.dispose()
    assert stored["calls"] == 2
    assert stored["cost_nusd"] == 2
    assert stored["latency_sum_ms"].hex() == (0.1 + 0.2).hex()
    assert Sketch.from_bytes(stored["latency_sketch"]).count == 2


@pytest.mark.parametrize("way", ["positions", "keys"])
def test_a_key_the_json_read_cannot_carry_still_merges_its_stored_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, way: str
) -> None:
    # Should SQLite's JSON ever hand a key back changed (here: cut at a NUL, as C strings are),
    # the stored row must still be merged, not overwritten by the batch's sketch. The usual
    # read carries positions, not keys; the exact way (taken when a sum might overflow) keys.
    engine, upsert = sqlite_upsert(tmp_path / "e.db")
    if way == "keys":
        monkeypatch.setattr(RollupUpsert, "_stored_sketches", lambda *_: None)
    real_loads = json.loads

    def cut_at_nul(text: str) -> Any:
        return [
            [v.split("\x00")[0] if isinstance(v, str) else v for v in r] for r in real_loads(text)
        ]

    monkeypatch.setattr(json, "loads", cut_at_nul)  # the module reads json.loads when called
    row = {**a_rollup_row(), "feature": "a\x00b"}
    with engine.begin() as connection:
        for _ in range(3):
            upsert.fold(connection, [row, {**row, "feature": "plain"}])
        stored = connection.execute(sa.select(schema.rollups)).mappings().all()
    engine.dispose()
    assert sorted((r["feature"], r["calls"]) for r in stored) == [("a\x00b", 3), ("plain", 3)]
    assert [Sketch.from_bytes(r["latency_sketch"]).count for r in stored] == [3, 3]


def test_the_sqlite_file_holds_the_values_as_bound(tmp_path: Path) -> None:
    # Read back with bare sqlite3, not through the store's own decoding.
    store = SqlStore.open(tmp_path / "d.db")
    calls = awkward_calls(600)
    try:
        store.write(calls, [])
    finally:
        store.close()
    connection = sqlite3.connect(tmp_path / "d.db")
    try:
        rows = dict(
            (row[0], row[1:])
            for row in connection.execute(
                "SELECT id, latency_ms, input_tokens, cost_nusd, feature, tags FROM calls"
            )
        )
    finally:
        connection.close()
    for call in calls:
        latency, tokens, nusd, feature, tags = rows[call.id]
        assert latency.hex() == call.latency_ms.hex()
        assert tokens == call.input_tokens
        assert nusd == (None if call.cost_usd is None else int(call.cost_usd * 10**9))
        assert feature == call.feature
        assert (tags is None) == (not call.tags)


def test_a_position_that_comes_back_unasked_for_falls_back_to_reading_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, upsert = sqlite_upsert(tmp_path / "f.db")
    real_loads = json.loads

    def shifted(text: str) -> Any:
        found = real_loads(text)
        # The positions read's rows start with an int; the keys read's with the granularity.
        return [[r[0] + 7, *r[1:]] if len(r) == 3 else r for r in found]

    monkeypatch.setattr(json, "loads", shifted)
    row = a_rollup_row()
    with engine.begin() as connection:
        for _ in range(3):
            upsert.fold(connection, [row, {**row, "feature": "other"}])
        stored = connection.execute(sa.select(schema.rollups)).mappings().all()
    engine.dispose()
    assert sorted((r["feature"], r["calls"]) for r in stored) == [("", 3), ("other", 3)]
    assert [Sketch.from_bytes(r["latency_sketch"]).count for r in stored] == [3, 3]


def all_rollup_rows(store: SqlStore) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of both call rollup tables, floats as hex so equality is to the bit."""
    tables = {}
    with store.engine.connect() as connection:
        for table in (schema.rollups, schema.user_rollups):
            rows = connection.execute(sa.select(table)).all()
            tables[table.name] = sorted(
                tuple(v.hex() if isinstance(v, float) else v for v in row) for row in rows
            )
    return tables


def test_the_positions_read_stores_what_the_exact_way_stores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Batches that revisit the same users, minutes and hours, with zero and empty sketches.
    batches = []
    for index in range(4):
        start = T0 + timedelta(seconds=20 * index)
        calls = awkward_calls(300, start=start)
        for k, call in enumerate(calls):
            latency = [0.0, 1e-4, 250.0, 86_000_000.0][k % 4]
            calls[k] = make_call(
                started_at=call.started_at,
                latency_ms=latency,
                ttft_ms=None if k % 3 else min(12.5 * k, latency),
                user=f"u{k % 17}",
                model=f"m{k % 3}",
                cost_usd=call.cost_usd,
            )
        batches.append(calls)
    tables = []
    for name, exact in (("fast.db", False), ("exact.db", True)):
        with monkeypatch.context() as patch:
            if exact:
                patch.setattr(RollupUpsert, "_stored_sketches", lambda *_: None)
            store = SqlStore.open(tmp_path / name)
            try:
                for batch in batches:
                    store.write(batch, [])
                tables.append(all_rollup_rows(store))
            finally:
                store.close()
    fast, exact_rows = tables
    # 51 (user, model) pairs (k % 17, k % 3), all within one hour: an hour and a day row each.
    assert len(fast["user_rollups"]) == 2 * 51
    assert fast == exact_rows
    minute = [r for r in fast["rollups"] if r[0] == 60]
    assert sum(r[schema.rollups.columns.keys().index("calls")] for r in minute) == 1200


def every_table(store: SqlStore) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table the writer writes, floats as hex so equality is to the bit."""
    tables = {}
    with store.engine.connect() as connection:
        for table in schema.metadata.sorted_tables:
            rows = connection.execute(sa.select(table)).all()
            tables[table.name] = sorted(
                (tuple(v.hex() if isinstance(v, float) else v for v in row) for row in rows),
                key=repr,
            )
    return tables


def scored_batches(sizes: list[int]) -> list[tuple[list[Any], list[Score]]]:
    """Batches of the given sizes that revisit users, models and minutes, each call with two
    scores, some scores a batch late (their call stored before them)."""
    batches: list[tuple[list[Any], list[Score]]] = []
    late: list[Score] = []
    at = 0
    for size in sizes:
        calls = []
        for k in range(size):
            calls.append(
                make_call(
                    started_at=T0 + timedelta(seconds=7 * (at + k)),
                    latency_ms=[0.1 + 0.2, 250.0, 1 / 3][k % 3],
                    ttft_ms=None if k % 2 else 0.05,
                    user=f"u{(at + k) % 11}",
                    model=f"m{(at + k) % 3}",
                    feature=f"f{k % 2}",
                )
            )
        at += size
        scores = [Score(call_id=c.id, name="empty", value=1 / 3) for c in calls]
        batches.append((calls, [*late, *scores]))
        late = [
            Score(call_id=c.id, name="refusal", value=0.1 * (i % 4)) for i, c in enumerate(calls)
        ]
    batches.append(([], late))
    return batches


def test_statements_padded_to_rungs_store_what_exact_sizes_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Sizes off every rung, so every statement kind is padded; a repeated batch too.
    batches = scored_batches([3, 5, 1, 37, 129, 6, 300, 2, 770])
    batches.append(batches[2])
    tables = []
    for name, padded in (("padded.db", True), ("exact.db", False)):
        with monkeypatch.context() as patch:
            if not padded:
                patch.setattr(bulk, "rung", lambda rows, most: rows)
                patch.setattr(rollup_upsert, "rung", lambda rows, most: rows)
            store = SqlStore.open(tmp_path / name)
            try:
                for calls, scores in batches:
                    store.write(calls, scores)
                tables.append(every_table(store))
            finally:
                store.close()
    padded_rows, exact_rows = tables
    assert len(padded_rows["calls"]) == sum(len(calls) for calls, _ in batches[:-1])
    assert len(padded_rows["scores"]) == 2 * len(padded_rows["calls"])
    assert padded_rows == exact_rows


def test_batches_of_every_size_prepare_a_bounded_set_of_statements(tmp_path: Path) -> None:
    # sqlite3 keeps each distinct text prepared (128 a connection; a statement of 700 calls
    # holds megabytes there): statement texts must not grow with the sizes batches come in.
    store = SqlStore.open(tmp_path / "aivitals.db")
    texts: set[str] = set()
    sa.event.listen(
        store.engine, "before_cursor_execute", lambda *args: texts.add(args[2]), named=False
    )
    try:
        for calls, scores in scored_batches(list(range(1, 121))):
            store.write(calls, scores)
    finally:
        store.close()
    by_kind: dict[str, int] = {}
    for text in texts:
        # The text with its run of placeholders as one: what is left names the statement.
        kind = re.sub(r"\(\?\)(?:, \(\?\))*", "(?)", re.sub(r"\?(?:, \?)*", "?", text))
        by_kind[kind] = by_kind.get(kind, 0) + 1
    # 120 sizes of batch: each kind of statement has at most a text a power of two up to 128.
    assert max(by_kind.values()) <= 8 + 1, by_kind
    assert len(texts) < 100, len(texts)


def test_on_postgresql_a_batch_reads_the_rollup_rows_it_touches_by_their_key(
    postgresql_db_url: str,
) -> None:
    # A row-value IN over the batch's keys had PostgreSQL scan the whole table, each row against
    # every key (380 ms a batch at 35,000 user rollup rows): the keys go in as arrays, joined to
    # the table on its primary key.
    table = schema.user_rollups
    blank = {c.name: b"" if isinstance(c.type, sa.LargeBinary) else 0 for c in table.columns}
    stored = [
        {
            **blank,
            "granularity": 3600,
            "bucket_start": 3600 * hour,
            "user": f"u{user}",
            "provider": "openai",
            "model": "gpt-4o",
            "calls": hour + user,
        }
        for hour in range(50)
        for user in range(200)
    ]
    store = SqlStore.open(postgresql_db_url)
    try:
        with store.engine.begin() as connection:
            connection.execute(sa.insert(table), stored)
            connection.exec_driver_sql("ANALYZE user_rollups")
            upsert = RollupUpsert(
                table, ("granularity", "bucket_start", *schema.USER_ROLLUP_KEYS), connection.dialect
            )
            present = [
                (3600, 3600 * h, f"u{u}", "openai", "gpt-4o")
                for h in range(0, 50, 7)
                for u in range(0, 200, 3)
            ]
            absent = [(3600, 3600 * h, "nobody", "openai", "gpt-4o") for h in range(20)]
            absent += [(86400, 0, "u1", "openai", "gpt-4o"), (3600, 0, "u1", "openai", "é")]
            found = upsert._stored(connection, present + absent)
            assert set(found) == set(present)
            assert all(found[key]["calls"] == key[1] // 3600 + int(key[2][1:]) for key in present)
            keys = present + absent
            assert upsert._by_arrays is not None, "PostgreSQL reads a batch's rows by arrays"
            sql = str(upsert._by_arrays.compile(dialect=connection.dialect))
            params = {f"k{i}": [key[i] for key in keys] for i in range(5)}
            plans = []
            for setting in ("on", "off"):
                # Off: whether the primary key can serve the join (the key columns compared
                # as text with their varchar columns), not only whether it is cheaper here.
                connection.exec_driver_sql(f"SET LOCAL enable_seqscan = {setting}")
                explained = connection.exec_driver_sql(f"EXPLAIN {sql}", params)
                plans.append("\n".join(row[0] for row in explained))
    finally:
        store.close()
    chosen, indexed = plans
    # A join of the keys to the table (hash or nested loop, as the planner likes), never the
    # table filtered by a list of every key.
    assert "Function Scan on k" in chosen, chosen
    assert "Join" in chosen or "Nested Loop" in chosen, chosen
    assert "Index Scan using pk_user_rollups" in indexed, indexed
