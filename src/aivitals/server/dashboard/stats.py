"""Reads the dashboard needs beyond the query layer's: a latency histogram, score means over
time, the values each filter can take, and one call with its scores and the rest of its trace.

They reuse the query layer's pieces (`Window`, `Filters`, `call_conditions`, `collect`) and add
no table or index. The histogram and the score series read raw calls, so calls that
``--retention-days`` has deleted are not in them (the rollups that keep older totals hold
sketches, not the bins a histogram shows).
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
from aivitals.store.rows import row_call, row_score
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


@dataclass(frozen=True, slots=True, kw_only=True)
class ScorePoint:
    """The mean of one score over the calls that started in one bucket (UTC ``start``)."""

    start: datetime
    name: str
    mean: float
    count: int


@dataclass(frozen=True, slots=True, kw_only=True)
class FilterValue:
    """A value a field takes in the window, and how many calls have it."""

    value: str
    calls: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CallDetail(CallWithScores):
    """A call, its scores, and every stored call of the same trace (itself included), oldest first."""

    trace: list[Call]


def latency_histogram(
    connection: sa.Connection,
    window: Window,
    filters: Filters,
    by: str | None = None,
    edges_ms: Sequence[float] = LATENCY_EDGES_MS,
) -> list[HistogramSeries]:
    """Calls per latency bin, per ``by`` value when given (groups with most calls first)."""
    latency = calls.c.latency_ms
    # One pass: a running count below each edge; the bins are the differences.
    below = [sa.func.sum(sa.case((latency < edge, 1), else_=0)) for edge in edges_ms]
    groups = [calls.c[by]] if by else []
    query = (
        sa.select(*groups, sa.func.count(), *below)
        .where(
            calls.c.started_ms >= window.start_ms,
            calls.c.started_ms < window.end_ms,
            *call_conditions(filters),
        )
        .group_by(*groups)
    )
    merged: dict[str | None, list[int]] = {}
    for row in connection.execute(query):
        values: tuple[Any, ...] = tuple(row)
        key = (values[0] or None) if by else None
        total, running = int(values[len(groups)]), [int(v or 0) for v in values[len(groups) + 1 :]]
        if total == 0:
            continue
        counts = [b - a for a, b in zip([0, *running], [*running, total], strict=True)]
        # '' and NULL both mean absent: add their rows together.
        before = merged.get(key)
        merged[key] = (
            counts if before is None else [a + b for a, b in zip(before, counts, strict=True)]
        )
    series = [
        HistogramSeries(group={by: key} if by else {}, calls=sum(counts), counts=counts)
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
    query = (
        sa.select(bucket, scores.c.name, sa.func.sum(scores.c.value), sa.func.count())
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
            mean=float(total) / int(count),
            count=int(count),
        )
        for index, name, total, count in connection.execute(query)
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
            if key[1]
        ]
        values.sort(key=lambda v: (-v.calls, v.value))
        found[name] = values[:limit]
    return found


def call_detail(connection: sa.Connection, call_id: str) -> CallDetail | None:
    """The call with id ``call_id``, its scores and its trace; None when no such call is stored."""
    row = connection.execute(sa.select(calls).where(calls.c.id == call_id)).first()
    if row is None:
        return None
    call = row_call(row)
    found: list[Score] = [
        row_score(score)
        for score in connection.execute(
            sa.select(scores)
            .where(scores.c.call_id == call_id)
            .order_by(scores.c.created_ms, scores.c.name, scores.c.id)
        )
    ]
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
        trace = [row_call(other) for other in connection.execute(query)] or [call]
    return CallDetail(call=call, scores=tuple(found), trace=trace)
