"""Reads the dashboard needs beyond the query layer's: a latency histogram, score means over
time, the values each filter can take, and one call with its scores and the rest of its trace.

They reuse the query layer's pieces (`Window`, `Filters`, `call_conditions`, `collect`) and add
no table or index. The histogram and the score series read raw calls, so calls that
``--retention-days`` has deleted are not in them (the rollups that keep older totals hold
sketches, not the bins a histogram shows).

Like every read, they leave out stored rows whose values are out of range and count them
(``skipped_rows``; docs/queries.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from aivitals.model import Call, Score
from aivitals.query import Filters, QueryError, Window
from aivitals.query.calls import CallWithScores
from aivitals.query.collect import collect
from aivitals.query.filters import call_conditions
from aivitals.query.series import STEPS
from aivitals.store.bounds import MAX_DURATION_MS, MAX_SCORE_MAGNITUDE
from aivitals.store.rows import readable_call, readable_score
from aivitals.store.schema import calls, scores

LATENCY_EDGES_MS: tuple[float, ...] = (
    25, 50, 100, 150, 200, 300, 400, 500, 750, 1000,
    1500, 2000, 3000, 5000, 7500, 10_000, 20_000, 30_000, 60_000,
)  # fmt: skip
"""Upper edges of the histogram's bins: fine where LLM latencies cluster, coarse in the tail."""

FILTER_FIELDS = ("model", "provider", "feature", "team", "user", "environment")
"""The fields the dashboard offers as filters."""

TRACE_SPAN_MS = 3_600_000
"""Calls of one trace are looked for this long either side of the call (the time index serves it)."""
TRACE_LIMIT = 200


@dataclass(frozen=True, slots=True, kw_only=True)
class HistogramSeries:
    """Calls per latency bin for one group; ``counts[i]`` is below ``edges_ms[i]`` and at or
    above the edge before it, and the last count is at or above the last edge."""

    group: dict[str, str | None] = field(default_factory=dict)
    calls: int
    counts: list[int]
    skipped_rows: int = 0
    """Calls of this group left out because a value is out of range."""


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


@dataclass(frozen=True, slots=True, kw_only=True)
class FilterValue:
    """A value a field takes in the window, and how many calls have it."""

    value: str
    calls: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CallDetail(CallWithScores):
    """A call, its scores, and every stored call of the same trace (itself included), oldest first."""

    trace: list[Call]
    skipped_rows: int = 0
    """Scores and calls of the trace left out as unreadable (out of range, or not valid text)."""


UNREADABLE = "unreadable"
"""What `call_detail` answers for a stored call that cannot be read."""


def latency_histogram(
    connection: sa.Connection,
    window: Window,
    filters: Filters,
    by: str | None = None,
    edges_ms: Sequence[float] = LATENCY_EDGES_MS,
) -> list[HistogramSeries]:
    """Calls per latency bin, per ``by`` value when given (groups with most calls first)."""
    latency = calls.c.latency_ms
    # One pass: a running count below each edge; the bins are the differences. A latency out
    # of range (below 0, past a day, NaN) is counted apart, not binned: the running counts
    # take out those below 0, the last bin ends at the usable total.
    below = [sa.func.sum(sa.case((latency < edge, 1), else_=0)) for edge in edges_ms]
    usable = sa.func.sum(sa.case((latency.between(0, MAX_DURATION_MS), 1), else_=0))
    negative = sa.func.sum(sa.case((latency < 0, 1), else_=0))
    groups = [calls.c[by]] if by else []
    query = (
        sa.select(*groups, sa.func.count(), usable, negative, *below)
        .where(
            calls.c.started_ms >= window.start_ms,
            calls.c.started_ms < window.end_ms,
            *call_conditions(filters),
        )
        .group_by(*groups)
    )
    merged: dict[str | None, list[int]] = {}
    skipped: dict[str | None, int] = {}
    for row in connection.execute(query):
        values: tuple[Any, ...] = tuple(row)
        key = (values[0] or None) if by else None
        stored, total, under = (int(v or 0) for v in values[len(groups) : len(groups) + 3])
        running = [int(v or 0) - under for v in values[len(groups) + 3 :]]
        if stored == 0:
            continue
        if stored > total:
            skipped[key] = skipped.get(key, 0) + stored - total
        counts = [b - a for a, b in zip([0, *running], [*running, total], strict=True)]
        # '' and NULL both mean absent: add their rows together.
        before = merged.get(key)
        merged[key] = (
            counts if before is None else [a + b for a, b in zip(before, counts, strict=True)]
        )
    series = [
        HistogramSeries(
            group={by: key} if by else {},
            calls=sum(counts),
            counts=counts,
            skipped_rows=skipped.get(key, 0),
        )
        for key, counts in merged.items()
    ]
    series.sort(key=lambda s: (-s.calls, tuple((v is None, v or "") for v in s.group.values())))
    return series


def score_series(
    connection: sa.Connection, window: Window, filters: Filters, step: str
) -> list[ScorePoint]:
    """Each score's mean per ``step`` bucket of its call's start, oldest first, then by name."""
    if step not in STEPS:
        raise QueryError(f"--step: cannot read {step!r}; use {' or '.join(STEPS)}")
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


def filter_values(
    connection: sa.Connection,
    window: Window,
    fields: Sequence[str] = FILTER_FIELDS,
    *,
    limit: int = 200,
) -> dict[str, list[FilterValue]]:
    """The values each field takes in the window, most calls first, at most ``limit`` each.

    Absent values are left out. Answered from rollups for every field but ``user``.
    """
    found: dict[str, list[FilterValue]] = {}
    for name in fields:
        totals = collect(
            connection,
            (window.start_ms, window.end_ms),
            Filters(),
            (name,),
            percentiles=False,
            sums=("calls",),
        )
        values = [
            FilterValue(value=key[1], calls=int(totals.ints["calls"][gid]))
            for gid, key in enumerate(totals.keys)
            if key[1] and totals.ints["calls"][gid]
        ]
        values.sort(key=lambda v: (-v.calls, v.value))
        found[name] = values[:limit]
    return found


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
    return CallDetail(call=call, scores=tuple(found), trace=trace, skipped_rows=skipped)
