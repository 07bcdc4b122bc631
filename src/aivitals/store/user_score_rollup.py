"""User score rollups: each stored score folded into its call's hour and day, by user (schema 8).

`aivitals.store.score_rollup` keys scores by the call's `ROLLUP_KEYS`, which leave users out;
these rows key them by the call's (user, provider, model), so one user's report reads its
quality from a few rows instead of joining every score to its call. The rules are that
module's: a score counts with its call, bucketed by the call's start; one whose call is not
stored yet waits and is folded when the call arrives (`fold_waiting`); a resent score (same id)
is folded once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect

from aivitals.model import Score
from aivitals.store.bounds import MAX_SCORE_MAGNITUDE
from aivitals.store.bulk import BulkInsert
from aivitals.store.engine import among
from aivitals.store.schema import (
    USER_GRANULARITIES,
    USER_ROLLUP_KEYS,
    calls,
    scores,
    user_score_rollups,
)

KEY_COLUMNS = ("granularity", "bucket_start", *USER_ROLLUP_KEYS, "name", "source")
SUMS = ("value_sum", "value_squares", "value_count", "skipped")
_CHUNK = 500  # ids per IN (...): far below SQLite's 32,766 parameters a statement

Sums = dict[tuple[Any, ...], list[float]]
_UPSERTS: dict[tuple[str, str], BulkInsert] = {}


def _upsert(dialect: Dialect) -> BulkInsert:
    """An insert that adds a row's sums to the stored row of the same key, many rows to a
    statement on SQLite (`BulkInsert`: an ``executemany`` through SQLAlchemy compiled and
    stepped every row of a batch, about a thousand a batch of 500 scores)."""
    key = (dialect.name, dialect.driver)
    found = _UPSERTS.get(key)
    if found is None:
        insert = postgresql.insert if dialect.name == "postgresql" else sqlite.insert
        statement = insert(user_score_rollups)
        found = _UPSERTS[key] = BulkInsert(
            statement.on_conflict_do_update(
                index_elements=list(KEY_COLUMNS),
                set_={name: user_score_rollups.c[name] + statement.excluded[name] for name in SUMS},
            ),
            dialect,
            columns=(*KEY_COLUMNS, *SUMS),
        )
    return found


def fold_scores(connection: sa.Connection, batch: Sequence[Score]) -> None:
    """Fold newly stored scores (`score_rollup.new_scores`) whose call is stored; the others
    wait for their call."""
    if not batch:
        return
    keys = _call_keys(connection, {score.call_id for score in batch})
    sums: Sums = {}
    for score in batch:
        found = keys.get(score.call_id)
        if found is not None:
            _add(sums, found, score.name, score.source, score.value)
    _write(connection, sums)


def fold_waiting(connection: sa.Connection, call_ids: Sequence[str]) -> None:
    """Fold the stored scores of newly stored calls; runs before the batch's own scores go in."""
    waiting: list[Any] = []
    for chunk in _chunks(list(call_ids)):
        waiting.extend(
            connection.execute(
                sa.select(scores.c.call_id, scores.c.name, scores.c.source, scores.c.value).where(
                    among(connection, scores.c.call_id, chunk)
                )
            )
        )
    if not waiting:
        return
    keys = _call_keys(connection, {row[0] for row in waiting})
    sums: Sums = {}
    for call_id, name, source, value in waiting:
        _add(sums, keys[call_id], name, source, value)
    _write(connection, sums)


def backfill(connection: sa.Connection) -> None:
    """Rebuild every user score rollup from the stored scores joined to their calls."""
    connection.execute(sa.delete(user_score_rollups))
    usable = sa.func.abs(scores.c.value) <= MAX_SCORE_MAGNITUDE
    dimensions = [sa.func.coalesce(calls.c[name], "") for name in USER_ROLLUP_KEYS]
    for granularity in USER_GRANULARITIES:
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
        connection.execute(user_score_rollups.insert().from_select([*KEY_COLUMNS, *SUMS], query))


def _call_keys(connection: sa.Connection, ids: set[str]) -> dict[str, tuple[Any, ...]]:
    """Call id to (start in epoch seconds, user, provider, model with '' for absent)."""
    columns = [calls.c.id, calls.c.started_ms, *(calls.c[name] for name in USER_ROLLUP_KEYS)]
    found: dict[str, tuple[Any, ...]] = {}
    for chunk in _chunks(list(ids)):
        for row in connection.execute(
            sa.select(*columns).where(among(connection, calls.c.id, chunk))
        ):
            found[row[0]] = (row[1] // 1000, *(value or "" for value in row[2:]))
    return found


def _add(sums: Sums, call: tuple[Any, ...], name: str, source: str, value: float) -> None:
    seconds, dimensions = call[0], call[1:]
    usable = abs(value) <= MAX_SCORE_MAGNITUDE  # a NaN is left out, as the raw read does
    for granularity in USER_GRANULARITIES:
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
        _upsert(connection.dialect).execute_values(
            connection, [(*key, *row) for key, row in sums.items()]
        )


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]
