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

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import sqlalchemy as sa

from aivitals.model import Score
from aivitals.store.bounds import MAX_SCORE_MAGNITUDE
from aivitals.store.bulk import placeholders
from aivitals.store.engine import among
from aivitals.store.schema import GRANULARITIES, ROLLUP_KEYS, calls, score_rollups, scores

KEY_COLUMNS = ("granularity", "bucket_start", *ROLLUP_KEYS, "name", "source")
SUMS = ("value_sum", "value_squares", "value_count", "skipped")
_CHUNK = 500  # ids per IN (...): far below SQLite's 32,766 parameters a statement
_WAITING_SQL = "SELECT call_id, name, source, value FROM scores WHERE call_id IN"

Sums = dict[tuple[Any, ...], list[float]]


def upsert_statement(insert: Any) -> Any:
    """An insert that adds a row's sums to the stored row of the same key (one statement)."""
    statement = insert(score_rollups)
    return statement.on_conflict_do_update(
        index_elements=list(KEY_COLUMNS),
        set_={name: score_rollups.c[name] + statement.excluded[name] for name in SUMS},
    )


def new_scores(connection: sa.Connection, batch: Sequence[Score]) -> list[Score]:
    """The scores of ``batch`` the insert will keep: first of each id, and not stored already."""
    by_id: dict[str, Score] = {}
    for score in batch:
        by_id.setdefault(score.id, score)
    stored: set[str] = set()
    for chunk in _chunks(list(by_id)):
        stored.update(connection.scalars(sa.select(scores.c.id).where(scores.c.id.in_(chunk))))
    return [score for score_id, score in by_id.items() if score_id not in stored]


def fold_scores(connection: sa.Connection, upsert: Any, batch: Sequence[Score]) -> None:
    """Fold newly stored scores whose call is stored; the others wait for their call."""
    if not batch:
        return
    keys = call_keys(connection, {score.call_id for score in batch})
    sums: Sums = {}
    for score in batch:
        found = keys.get(score.call_id)
        if found is not None:
            add(sums, found, score.name, score.source, score.value)
    _write(connection, upsert, sums)


def fold_waiting(
    connection: sa.Connection,
    upsert: Any,
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
    _write(connection, upsert, sums)


def waiting_scores(connection: sa.Connection, call_ids: Sequence[str]) -> list[Any]:
    """(call id, name, source, value) of the stored scores of ``call_ids``."""
    waiting: list[Any] = []
    if connection.dialect.name == "sqlite":
        for chunk in _chunks(list(call_ids)):
            waiting += connection.exec_driver_sql(
                f"{_WAITING_SQL} ({placeholders(len(chunk))})", tuple(chunk)
            )
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
    for chunk in _chunks(list(ids)):
        for row in connection.execute(
            sa.select(*columns).where(among(connection, calls.c.id, chunk))
        ):
            found[row[0]] = (row[1] // 1000, *(value or "" for value in row[2:]))
    return found


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


def _write(connection: sa.Connection, upsert: Any, sums: Sums) -> None:
    if sums:
        connection.execute(
            upsert,
            [
                dict(zip((*KEY_COLUMNS, *SUMS), (*key, *row), strict=True))
                for key, row in sums.items()
            ],
        )


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]
