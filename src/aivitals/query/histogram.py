"""Calls per latency bin: the dashboard's latency histogram.

Read from raw calls, so calls that ``--retention-days`` has deleted are not in it (the rollups
that keep older totals hold sketches, not the bins a histogram shows). A latency out of range
(below 0, past a day, NaN: written by an older version or another tool) is counted apart in
``skipped_rows``, not binned.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from aivitals.query.filters import Filters, call_conditions
from aivitals.query.window import Window
from aivitals.store.bounds import MAX_DURATION_MS
from aivitals.store.schema import calls

LATENCY_EDGES_MS: tuple[float, ...] = (
    25, 50, 100, 150, 200, 300, 400, 500, 750, 1000,
    1500, 2000, 3000, 5000, 7500, 10_000, 20_000, 30_000, 60_000,
)  # fmt: skip
"""Upper edges of the histogram's bins: fine where LLM latencies cluster, coarse in the tail."""


@dataclass(frozen=True, slots=True, kw_only=True)
class HistogramSeries:
    """Calls per latency bin for one group; ``counts[i]`` is below ``edges_ms[i]`` and at or
    above the edge before it, and the last count is at or above the last edge."""

    group: dict[str, str | None] = field(default_factory=dict)
    calls: int
    counts: list[int]
    skipped_rows: int = 0
    """Calls of this group left out because a value is out of range."""


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
