"""User score rollups: each stored score folded into its call's hour and day, by user (schema 8).

`aivitals.store.score_rollup` keys scores by the call's `ROLLUP_KEYS`, which leave users out;
these rows key them by the call's (user, provider, model), so one user's report reads its
quality from a few rows instead of joining every score to its call. The rules are that
module's: a score counts with its call, bucketed by the call's start; one whose call is not
stored yet waits and is folded when the call arrives (`fold_waiting`); a resent score (same id)
is folded once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect

from aivitals.model import Score
from aivitals.store import score_rollup
from aivitals.store.bulk import BulkInsert
from aivitals.store.schema import USER_GRANULARITIES, USER_ROLLUP_KEYS, user_score_rollups
from aivitals.store.score_rollup import SUMS, Sums, add, call_keys, waiting_scores

KEY_COLUMNS = ("granularity", "bucket_start", *USER_ROLLUP_KEYS, "name", "source")
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
    keys = call_keys(connection, {score.call_id for score in batch}, USER_ROLLUP_KEYS)
    sums: Sums = {}
    for score in batch:
        found = keys.get(score.call_id)
        if found is not None:
            add(
                sums, found, score.name, score.source, score.value, granularities=USER_GRANULARITIES
            )
    _write(connection, sums)


def fold_waiting(
    connection: sa.Connection, call_ids: Sequence[str], *, waiting: list[Any] | None = None
) -> None:
    """Fold the stored scores of newly stored calls; runs before the batch's own scores go in.

    ``waiting`` is `waiting_scores` of ``call_ids`` when the caller has read it already.
    """
    if waiting is None:
        waiting = waiting_scores(connection, call_ids)
    if not waiting:
        return
    keys = call_keys(connection, {row[0] for row in waiting}, USER_ROLLUP_KEYS)
    sums: Sums = {}
    for call_id, name, source, value in waiting:
        add(sums, keys[call_id], name, source, value, granularities=USER_GRANULARITIES)
    _write(connection, sums)


def backfill(connection: sa.Connection) -> None:
    """Rebuild every user score rollup from the stored scores joined to their calls."""
    score_rollup.backfill(connection, user_score_rollups, USER_ROLLUP_KEYS, USER_GRANULARITIES)


def _write(connection: sa.Connection, sums: Sums) -> None:
    if sums:
        _upsert(connection.dialect).execute_values(
            connection, [(*key, *row) for key, row in sums.items()]
        )
