"""Score means over time: each score's mean per bucket of its call's start.

Read from raw calls and scores, so calls that ``--retention-days`` has deleted are not in it.
A score out of range is left out of its mean and counted in ``skipped_rows``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from aivitals.query.errors import QueryError
from aivitals.query.filters import Filters, call_conditions
from aivitals.query.series import STEPS
from aivitals.query.window import Window
from aivitals.store.bounds import MAX_SCORE_MAGNITUDE
from aivitals.store.schema import calls, scores


@dataclass(frozen=True, slots=True, kw_only=True)
class ScorePoint:
    """The mean of one score over the calls that started in one bucket (UTC ``start``)."""

    start: datetime
    name: str
    mean: float | None
    """None when every score of the bucket was left out as out of range."""
    count: int
    skipped_rows: int = 0
    """Scores of this bucket and name left out because their value is out of range."""


def score_series(
    connection: sa.Connection, window: Window, filters: Filters, step: str
) -> list[ScorePoint]:
    """Each score's mean per ``step`` bucket of its call's start, oldest first, then by name."""
    if step not in STEPS:
        raise QueryError("step", f"cannot read {step!r}; use {' or '.join(STEPS)}")
    step_ms = STEPS[step] * 1000
    bucket = calls.c.started_ms // step_ms
    usable = sa.func.abs(scores.c.value) <= MAX_SCORE_MAGNITUDE
    query = (
        sa.select(
            bucket,
            scores.c.name,
            sa.func.sum(sa.case((usable, scores.c.value))),
            sa.func.count(sa.case((usable, 1))),
            sa.func.sum(sa.case((usable, 0), else_=1)),
        )
        .select_from(scores.join(calls, calls.c.id == scores.c.call_id))
        .where(
            calls.c.started_ms >= window.start_ms,
            calls.c.started_ms < window.end_ms,
            *call_conditions(filters),
        )
        .group_by(bucket, scores.c.name)
    )
    points = [
        ScorePoint(
            start=datetime.fromtimestamp(int(index) * step_ms / 1000, UTC),
            name=name,
            mean=float(total) / int(count) if count else None,
            count=int(count),
            skipped_rows=int(left_out),
        )
        for index, name, total, count, left_out in connection.execute(query)
    ]
    points.sort(key=lambda p: (p.start, p.name))
    return points
