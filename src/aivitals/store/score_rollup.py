"""Score rollups: each stored score folded into its call's minute, hour and day buckets.

A score counts with its call (`aivitals.query.quality`), so it is bucketed by the call's start
and keyed by the call's rollup dimensions (`ROLLUP_KEYS`), its name and its source. A score whose
call is not stored yet cannot be bucketed: it waits in ``scores`` and is folded when its call
arrives (`fold_waiting`, in the transaction that stores the call). A score whose call never comes
is read by nothing, raw or rolled, as before.

Only scores the store newly keeps are folded: one resent with the same id is skipped by the
insert and by the fold alike, while two scores with different ids for the same call and name both
count, as the raw join counts them.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect

from aivitals.model import Score
from aivitals.store.bounds import MAX_SCORE_MAGNITUDE
from aivitals.store.bulk import BulkInsert, padded_in
from aivitals.store.engine import among, stored_ids
from aivitals.store.schema import GRANULARITIES, ROLLUP_KEYS, calls, score_rollups, scores

KEY_COLUMNS = ("granularity", "bucket_start", *ROLLUP_KEYS, "name", "source")
SUMS = ("value_sum", "value_squares", "value_count", "skipped")
_CHUNK = 500  # ids per IN (...): far below SQLite's 32,766 parameters a statement
_WAITING_SQL = "SELECT call_id, name, source, value FROM scores WHERE call_id IN"

Sums = dict[tuple[Any, ...], list[float]]


_UPSERTS: dict[tuple[str, str, str], BulkInsert] = {}


def upsert_for(table: sa.Table, key_columns: Sequence[str], dialect: Dialect) -> BulkInsert:
    """An insert that adds a row's sums to the stored row of the same key, many rows to a
    statement on SQLite (`BulkInsert`), built once per table and dialect.

    Through SQLAlchemy's ``executemany`` every row was its own step, and CPython's sqlite3
    hands the GIL over at each: behind a busy gateway each hand-over waited for the event loop,
    and the score rollups of a batch (some seventy rows) helped the store fall behind (the
    gateway's soak at 650 requests a second filled the recorder's queue and dropped calls).
    """
    cache_key = (table.name, dialect.name, dialect.driver)
    found = _UPSERTS.get(cache_key)
    if found is None:
        insert = postgresql.insert if dialect.name == "postgresql" else sqlite.insert
        statement = insert(table)
        found = _UPSERTS[cache_key] = BulkInsert(
            statement.on_conflict_do_update(
                index_elements=list(key_columns),
                set_={name: table.c[name] + statement.excluded[name] for name in SUMS},
                # Every row holds a score (counted or skipped): one of none is `rung` padding.
                where=statement.excluded.value_count + statement.excluded.skipped
                > sa.literal_column("0"),
            ),
            dialect,
            columns=(*key_columns, *SUMS),
            padding=SUMS,
        )
    return found


def new_scores(connection: sa.Connection, batch: Sequence[Score]) -> list[Score]:
    """The scores of ``batch`` the insert will keep: first of each id, and not stored already."""
    by_id: dict[str, Score] = {}
    for score in batch:
        by_id.setdefault(score.id, score)
    stored = stored_ids(connection, scores.c.id, list(by_id))
    return [score for score_id, score in by_id.items() if score_id not in stored]


SCORED_CALL_KEYS = (*ROLLUP_KEYS, "user")
"""The call columns `call_keys` reads for both score rollups, the users' (by user, provider and
model) and these (by `ROLLUP_KEYS`): one read of a batch's calls serves the two folds."""


def fold_scores(
    connection: sa.Connection, batch: Sequence[Score], keys: dict[str, tuple[Any, ...]]
) -> None:
    """Fold newly stored scores whose call is stored; the others wait for their call.

    ``keys``: `call_keys` of the batch's calls by `SCORED_CALL_KEYS` (the writer reads them
    once for this fold and the users').
    """
    if not batch:
        return
    project = projection(ROLLUP_KEYS)
    sums: Sums = {}
    for score in batch:
        found = keys.get(score.call_id)
        if found is not None:
            add(sums, project(found), score.name, score.source, score.value)
    _write(connection, sums)


def fold_waiting(
    connection: sa.Connection,
    call_ids: Sequence[str],
    *,
    waiting: list[Any] | None = None,
) -> None:
    """Fold the stored scores of newly stored calls: scores that arrived before their call.

    Runs before the batch's own scores are inserted, so none is folded twice. ``waiting`` is
    `waiting_scores` of ``call_ids`` when the caller has read it already (the writer reads it
    once for these rollups and the users').
    """
    if waiting is None:
        waiting = waiting_scores(connection, call_ids)
    if not waiting:
        return
    keys = call_keys(connection, {row[0] for row in waiting})
    sums: Sums = {}
    for call_id, name, source, value in waiting:
        add(sums, keys[call_id], name, source, value)
    _write(connection, sums)


def waiting_scores(connection: sa.Connection, call_ids: Sequence[str]) -> list[Any]:
    """(call id, name, source, value) of the stored scores of ``call_ids``."""
    waiting: list[Any] = []
    if connection.dialect.name == "sqlite":
        for chunk in _chunks(list(call_ids)):
            marks, values = padded_in(chunk)
            waiting += connection.exec_driver_sql(f"{_WAITING_SQL} ({marks})", values)
        return waiting
    for chunk in _chunks(list(call_ids)):
        waiting.extend(
            connection.execute(
                sa.select(scores.c.call_id, scores.c.name, scores.c.source, scores.c.value).where(
                    among(connection, scores.c.call_id, chunk)
                )
            )
        )
    return waiting


def backfill(
    connection: sa.Connection,
    table: sa.Table = score_rollups,
    keys: Sequence[str] = ROLLUP_KEYS,
    granularities: Sequence[int] = GRANULARITIES,
) -> None:
    """Rebuild every score rollup from the stored scores joined to their calls (schema 6);
    ``table``, ``keys`` and ``granularities`` name another score rollup (the users', schema 8)."""
    connection.execute(sa.delete(table))
    usable = sa.func.abs(scores.c.value) <= MAX_SCORE_MAGNITUDE
    dimensions = [sa.func.coalesce(calls.c[name], "") for name in keys]
    for granularity in granularities:
        bucket = calls.c.started_ms // (granularity * 1000) * granularity
        query = (
            sa.select(
                sa.literal(granularity),
                bucket,
                *dimensions,
                scores.c.name,
                scores.c.source,
                sa.func.coalesce(sa.func.sum(sa.case((usable, scores.c.value), else_=0.0)), 0.0),
                sa.func.coalesce(
                    sa.func.sum(sa.case((usable, scores.c.value * scores.c.value), else_=0.0)),
                    0.0,
                ),
                sa.func.sum(sa.case((usable, 1), else_=0)),
                sa.func.sum(sa.case((usable, 0), else_=1)),
            )
            .select_from(scores.join(calls, calls.c.id == scores.c.call_id))
            .group_by(bucket, *dimensions, scores.c.name, scores.c.source)
        )
        columns = ["granularity", "bucket_start", *keys, "name", "source", *SUMS]
        connection.execute(table.insert().from_select(columns, query))


def call_keys(
    connection: sa.Connection, ids: Iterable[str], keys: Sequence[str] = ROLLUP_KEYS
) -> dict[str, tuple[Any, ...]]:
    """Call id to (start in epoch seconds, its ``keys`` with '' for absent)."""
    columns = [calls.c.id, calls.c.started_ms, *(calls.c[name] for name in keys)]
    found: dict[str, tuple[Any, ...]] = {}
    sqlite_driver = connection.dialect.name == "sqlite"
    for chunk in _chunks(list(ids)):
        if sqlite_driver:
            marks, values = padded_in(chunk)
            rows: Iterable[Sequence[Any]] = connection.exec_driver_sql(
                _call_keys_sql(tuple(keys), marks), values
            )
        else:
            rows = connection.execute(
                sa.select(*columns).where(among(connection, calls.c.id, chunk))
            )
        for row in rows:
            found[row[0]] = (row[1] // 1000, *(value or "" for value in row[2:]))
    return found


@functools.lru_cache(maxsize=32)
def _call_keys_sql(keys: tuple[str, ...], marks: str) -> str:
    """`call_keys`' read as SQLite text: only the schema's own quoted names and placeholders."""
    quote = sqlite.dialect().identifier_preparer.quote
    names = ", ".join(quote(name) for name in ("id", "started_ms", *keys))
    return f"SELECT {names} FROM calls WHERE id IN ({marks})"  # noqa: S608


def projection(keys: Sequence[str]) -> Callable[[tuple[Any, ...]], tuple[Any, ...]]:
    """A `call_keys` row by `SCORED_CALL_KEYS` cut to (start, ``keys``...)."""
    return operator.itemgetter(0, *(1 + SCORED_CALL_KEYS.index(name) for name in keys))


def add(
    sums: Sums,
    call: tuple[Any, ...],
    name: str,
    source: str,
    value: float,
    *,
    granularities: Sequence[int] = GRANULARITIES,
) -> None:
    """Add one score of ``call`` (a `call_keys` value) to its buckets' sums."""
    seconds, dimensions = call[0], call[1:]
    # ``not <=``: a NaN is left out too, as the raw read leaves out what it cannot compare.
    usable = abs(value) <= MAX_SCORE_MAGNITUDE
    for granularity in granularities:
        key = (granularity, seconds - seconds % granularity, *dimensions, name, source)
        row = sums.get(key)
        if row is None:
            row = sums[key] = [0.0, 0.0, 0, 0]
        if usable:
            row[0] += value
            row[1] += value * value
            row[2] += 1
        else:
            row[3] += 1


def _write(connection: sa.Connection, sums: Sums) -> None:
    if sums:
        upsert_for(score_rollups, KEY_COLUMNS, connection.dialect).execute_values(
            connection, [(*key, *row) for key, row in sums.items()]
        )


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]
