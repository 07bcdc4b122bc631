"""The calls themselves, newest first, each with its quality scores."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from aivitals.model import Call, Score
from aivitals.query.errors import QueryError
from aivitals.query.filters import Filters, call_conditions
from aivitals.query.window import Window
from aivitals.store.rows import readable_call, readable_score
from aivitals.store.schema import calls, scores

MAX_OFFSET = 1_000_000
"""The most calls a page can skip. Deeper than this, narrow the window (``since``) instead: an
offset walks every call it skips."""


@dataclass(frozen=True, slots=True)
class CallWithScores:
    """A stored call and the scores recorded for it (oldest first), wherever they came from."""

    call: Call
    scores: tuple[Score, ...]


@dataclass(frozen=True, slots=True)
class CallsPage:
    """A page of calls, and the stored rows of the page that could not be read.

    ``skipped_rows`` counts calls (and scores of the page's calls) whose stored values are out of
    range or are not valid text: written by an older version or another tool, they are left out
    of the page, which is then shorter than its limit. Offsets count stored calls, read or not,
    so paging on from ``offset + limit`` neither repeats nor misses a call.
    """

    calls: list[CallWithScores]
    skipped_rows: int = 0


def list_calls(
    connection: sa.Connection, window: Window, filters: Filters, *, limit: int, offset: int
) -> CallsPage:
    """A page of the window's calls, newest first (ties by id, descending)."""
    if limit < 0 or offset < 0:
        raise QueryError(None, f"limit and offset must be 0 or more, got {limit} and {offset}")
    if offset > MAX_OFFSET:
        raise QueryError(
            "offset",
            f"{offset} is past the most a page can skip ({MAX_OFFSET:,}); "
            "narrow the window with since instead",
        )
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
    rows = connection.execute(query).all()
    page = [call for call in map(readable_call, rows) if call is not None]
    skipped = len(rows) - len(page)
    if not page:
        return CallsPage([], skipped)
    found: dict[str, list[Score]] = {call.id: [] for call in page}
    query = (
        sa.select(scores)
        .where(scores.c.call_id.in_(list(found)))
        .order_by(scores.c.created_ms, scores.c.name, scores.c.id)
    )
    for row in connection.execute(query):
        score = readable_score(row)
        if score is None:
            skipped += 1
        else:
            found[row.call_id].append(score)
    return CallsPage([CallWithScores(call, tuple(found[call.id])) for call in page], skipped)
