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

from aivitals.model import Score
from aivitals.store import score_rollup
from aivitals.store.schema import USER_GRANULARITIES, USER_ROLLUP_KEYS, user_score_rollups
from aivitals.store.score_rollup import (
    Sums,
    add,
    call_keys,
    projection,
    upsert_for,
    waiting_scores,
)

KEY_COLUMNS = ("granularity", "bucket_start", *USER_ROLLUP_KEYS, "name", "source")


def fold_scores(
    connection: sa.Connection, batch: Sequence[Score], keys: dict[str, tuple[Any, ...]]
) -> None:
    """Fold newly stored scores (`score_rollup.new_scores`) whose call is stored; the others
    wait for their call. ``keys``: `score_rollup.call_keys` of their calls by
    `score_rollup.SCORED_CALL_KEYS`."""
    if not batch:
        return
    project = projection(USER_ROLLUP_KEYS)
    sums: Sums = {}
    for score in batch:
        found = keys.get(score.call_id)
        if found is not None:
            add(
                sums,
                project(found),
                score.name,
                score.source,
                score.value,
                granularities=USER_GRANULARITIES,
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
        upsert_for(user_score_rollups, KEY_COLUMNS, connection.dialect).execute_values(
            connection, [(*key, *row) for key, row in sums.items()]
        )
