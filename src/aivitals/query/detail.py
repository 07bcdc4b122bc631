"""One call in full: its scores, every stored call of its trace, and its captured content."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from aivitals.model import Call, Score
from aivitals.query.calls import CallWithScores
from aivitals.query.content import StoredContent, content_of
from aivitals.store.rows import readable_call, readable_score
from aivitals.store.schema import calls, scores

TRACE_SPAN_MS = 3_600_000
"""Calls of one trace are looked for this long either side of the call (the time index serves it)."""
TRACE_LIMIT = 200


@dataclass(frozen=True, slots=True, kw_only=True)
class CallDetail(CallWithScores):
    """A call, its scores, and every stored call of the same trace (itself included), oldest first."""

    trace: list[Call]
    skipped_rows: int = 0
    """Scores and calls of the trace left out as unreadable (out of range, or not valid text)."""
    content: StoredContent | None = None
    """The prompt and answer, redacted, when content capture kept them (`query.content`)."""


UNREADABLE = "unreadable"
"""What `call_detail` answers for a stored call that cannot be read."""


def call_detail(connection: sa.Connection, call_id: str) -> CallDetail | str | None:
    """The call with id ``call_id``, its scores and its trace; None when no such call is stored,
    `UNREADABLE` when it is stored but cannot be read (a value out of range, text that is not
    valid Unicode: written by an older version or another tool)."""
    row = connection.execute(sa.select(calls).where(calls.c.id == call_id)).first()
    if row is None:
        return None
    call = readable_call(row)
    if call is None:
        return UNREADABLE
    skipped = 0
    found: list[Score] = []
    for stored in connection.execute(
        sa.select(scores)
        .where(scores.c.call_id == call_id)
        .order_by(scores.c.created_ms, scores.c.name, scores.c.id)
    ):
        score = readable_score(stored)
        if score is None:
            skipped += 1
        else:
            found.append(score)
    trace = [call]
    if call.trace_id:
        started = int(row.started_ms)
        query = (
            sa.select(calls)
            .where(
                calls.c.started_ms >= started - TRACE_SPAN_MS,
                calls.c.started_ms < started + TRACE_SPAN_MS,
                calls.c.trace_id == call.trace_id,
            )
            .order_by(calls.c.started_ms, calls.c.id)
            .limit(TRACE_LIMIT)
        )
        rows = connection.execute(query).all()
        readable = [other for other in map(readable_call, rows) if other is not None]
        skipped += len(rows) - len(readable)
        trace = readable or [call]
    return CallDetail(
        call=call,
        scores=tuple(found),
        trace=trace,
        skipped_rows=skipped,
        content=content_of(connection, call_id),
    )
