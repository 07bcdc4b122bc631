"""The calls themselves, newest first, each with its quality scores."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from aivitals.model import Call, Score
from aivitals.query.errors import QueryError
from aivitals.query.filters import Filters, call_conditions
from aivitals.query.window import Window
from aivitals.store.rows import row_call, row_score
from aivitals.store.schema import calls, scores


@dataclass(frozen=True, slots=True)
class CallWithScores:
    """A stored call and the scores recorded for it (oldest first), wherever they came from."""

    call: Call
    scores: tuple[Score, ...]


def list_calls(
    connection: sa.Connection, window: Window, filters: Filters, *, limit: int, offset: int
) -> list[CallWithScores]:
    """A page of the window's calls, newest first (ties by id, descending)."""
    if limit < 0 or offset < 0:
        raise QueryError(f"calls: limit and offset must be 0 or more, got {limit} and {offset}")
    query = (
        sa.select(calls)
        .where(
            calls.c.started_ms >= window.start_ms,
            calls.c.started_ms < window.end_ms,
            *call_conditions(filters),
        )
        .order_by(calls.c.started_ms.desc(), calls.c.id.desc())
        .limit(limit)
        .offset(offset)
    )
    page = [row_call(row) for row in connection.execute(query)]
    if not page:
        return []
    found: dict[str, list[Score]] = {call.id: [] for call in page}
    query = (
        sa.select(scores)
        .where(scores.c.call_id.in_(list(found)))
        .order_by(scores.c.created_ms, scores.c.name, scores.c.id)
    )
    for row in connection.execute(query):
        found[row.call_id].append(row_score(row))
    return [CallWithScores(call, tuple(found[call.id])) for call in page]
