"""Stored rows into per-group totals: rollups where they can answer, raw calls where they must.

`collect` is what every aggregate query runs. It takes the edges of one or more adjacent
windows (a summary has one window; a time series has one per bucket), the filters and the
fields to group by, and returns for each (window, group) the same sums a rollup row holds, plus
latency and time-to-first-token percentiles.

When every filter and group is a rollup dimension, the windows are covered by `plan.cover`:
SQL sums the rollup rows, their sketches are merged (`SketchMerger`), and raw calls are read only
for the partial minutes at the edges; percentiles are then within 1% (``"sketch"``). When a
filter or group needs ``user``, which rollups do not keep, every call in the window is read and
percentiles are exact (``"exact"``); so are they when the window is too short to hold a whole
minute.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import sqlalchemy as sa

from aivitals.query.distribution import FloatArray, IntArray, SketchMerger, exact_quantiles
from aivitals.query.filters import Filters, call_conditions, needs_calls, rollup_conditions
from aivitals.query.plan import Plan, cover
from aivitals.store.rollup import SUM_FIELDS
from aivitals.store.schema import GRANULARITIES, calls, rollups

Method = Literal["exact", "sketch"]
GroupKey = tuple[Any, ...]
"""(window index, value of each ``by`` field...); absent values are None."""

QUANTILES = (0.5, 0.95, 0.99)
FLOAT_SUMS = ("latency_sum_ms", "ttft_sum_ms", "speed_sum")
INT_SUMS = tuple(name for name in SUM_FIELDS if name not in FLOAT_SUMS)


@dataclass(frozen=True, slots=True)
class Totals:
    """Sums and percentiles per group; group ``i`` is ``keys[i]``."""

    keys: list[GroupKey]
    ints: dict[str, IntArray]
    floats: dict[str, FloatArray]
    latency: FloatArray
    """(groups, len(QUANTILES)): p50, p95, p99; NaN for a group without calls."""
    ttft: FloatArray
    method: Method
    overall: Totals | None = None
    """With ``overall=True``: the same per window, all groups together (key: window index)."""


def collect(
    connection: sa.Connection,
    boundaries_ms: Sequence[int],
    filters: Filters,
    by: Sequence[str] = (),
    *,
    coarsest: int = GRANULARITIES[-1],
    percentiles: bool = True,
    overall: bool = False,
    sums: Sequence[str] = SUM_FIELDS,
) -> Totals:
    """Totals per (window, group) for the windows ``[b0, b1), [b1, b2), ...``.

    ``coarsest`` caps the rollup granularity (in seconds) used, so that no rollup bucket spans
    two windows whose edges are not aligned to it. ``overall`` adds the totals of each window
    over all groups, read in the same pass (a summary beside its breakdown). ``sums`` names the
    sums wanted (``calls`` always is); the others are left at zero, which spares the raw scan.
    """
    if needs_calls(filters, by):
        plan = Plan(raw=((boundaries_ms[0], boundaries_ms[-1]),), rolled=())
    else:
        plan = cover(boundaries_ms, coarsest=coarsest)
    method: Method = "sketch" if plan.rolled else "exact"
    reader = _Reader(
        connection,
        plan,
        filters,
        tuple(by),
        np.asarray(boundaries_ms, np.int64),
        sums=("calls", *(name for name in sums if name != "calls")),
    )
    rolled = reader.rolled_sums()
    raw = reader.raw_sums()
    keys = reader.groups.keys
    n = len(keys)
    # Ids n, n + 1, ... are the windows themselves, when their overall figures are wanted.
    windows = len(boundaries_ms) - 1 if overall else 0
    parents = np.asarray([key[0] for key in keys], np.int64) + n
    ints = {name: np.zeros(n + windows, np.int64) for name in INT_SUMS}
    floats = {name: np.zeros(n + windows) for name in FLOAT_SUMS}
    for ids, summed in (rolled, raw):
        for name, values in summed.items():
            target = ints[name] if name in ints else floats[name]
            np.add.at(target, ids, values)
    if windows:
        for column in ints.values():
            np.add.at(column, parents, column[:n])
        for sums_of in floats.values():
            np.add.at(sums_of, parents, sums_of[:n])

    def both(ids: IntArray) -> IntArray:
        return np.concatenate([ids, parents[ids]]) if windows else ids

    def twice(values: FloatArray) -> FloatArray:
        return np.concatenate([values, values]) if windows else values

    latency = np.full((n + windows, len(QUANTILES)), np.nan)
    ttft = np.full((n + windows, len(QUANTILES)), np.nan)
    raw_ids, raw_latency, raw_ttft = (
        reader.raw_values() if percentiles else (_ints(), np.zeros(0), np.zeros(0))
    )
    if percentiles and method == "exact":
        latency = exact_quantiles(both(raw_ids), twice(raw_latency), n + windows, QUANTILES)
        ttft = exact_quantiles(both(raw_ids), twice(raw_ttft), n + windows, QUANTILES)
    elif percentiles:
        latency_merger, ttft_merger = SketchMerger(n + windows), SketchMerger(n + windows)
        for ids, latency_blobs, ttft_blobs in reader.rolled_sketches():
            factor = 2 if windows else 1
            latency_merger.add_blobs(both(ids), latency_blobs * factor)
            ttft_merger.add_blobs(both(ids), ttft_blobs * factor)
        latency_merger.add_values(both(raw_ids), twice(raw_latency))
        ttft_merger.add_values(both(raw_ids), twice(raw_ttft))
        latency = latency_merger.quantiles(QUANTILES)
        ttft = ttft_merger.quantiles(QUANTILES)
    whole = None
    if windows:
        whole = Totals(
            [(i,) for i in range(windows)],
            {name: values[n:] for name, values in ints.items()},
            {name: values[n:] for name, values in floats.items()},
            latency[n:],
            ttft[n:],
            method,
        )
    return Totals(
        keys,
        {name: values[:n] for name, values in ints.items()},
        {name: values[:n] for name, values in floats.items()},
        latency[:n],
        ttft[:n],
        method,
        whole,
    )


class _Groups:
    """Group ids for (window index, group values), in order of first sight."""

    def __init__(self) -> None:
        self.keys: list[GroupKey] = []
        self._ids: dict[GroupKey, int] = {}

    def ids(self, windows: IntArray, columns: Sequence[Sequence[Any]]) -> IntArray:
        index = self._ids
        keys = self.keys
        found: list[int] = []
        for key in zip(windows.tolist(), *([v or None for v in c] for c in columns), strict=True):
            gid = index.get(key)
            if gid is None:
                gid = index[key] = len(keys)
                keys.append(key)
            found.append(gid)
        return np.asarray(found, np.int64)

    def known(self, windows: IntArray, columns: Sequence[Sequence[Any]]) -> IntArray:
        """Ids of keys already registered (sketch rows always have a sums row of their own)."""
        index = self._ids
        rows = zip(windows.tolist(), *([v or None for v in c] for c in columns), strict=True)
        return np.asarray([index[key] for key in rows], np.int64)


class _Reader:
    """The SQL side of one `collect`: the plan's rollup and raw rows, with their group ids."""

    def __init__(
        self,
        connection: sa.Connection,
        plan: Plan,
        filters: Filters,
        by: tuple[str, ...],
        edges: IntArray,
        *,
        sums: tuple[str, ...],
    ) -> None:
        self.connection = connection
        self.plan = plan
        self.filters = filters
        self.by = by
        self.edges = edges
        self.groups = _Groups()
        self.sums = sums

    def _windows(self, times_ms: Sequence[int]) -> IntArray:
        """The index of the window each instant falls in."""
        found = np.searchsorted(self.edges, np.asarray(times_ms, np.int64), side="right")
        return found.astype(np.int64) - 1

    def _rolled_where(self) -> list[sa.ColumnElement[bool]]:
        column = rollups.c
        ranges = [
            sa.and_(column.granularity == g, column.bucket_start >= a, column.bucket_start < b)
            for g, a, b in self.plan.rolled
        ]
        return [sa.or_(*ranges), *rollup_conditions(self.filters)]

    def rolled_sums(self) -> tuple[IntArray, dict[str, Any]]:
        """Rollup sums per (bucket, group), summed by SQL, with their group ids."""
        if not self.plan.rolled:
            return _ints(), {}
        keys = [rollups.c.bucket_start, *(rollups.c[name] for name in self.by)]
        query = (
            sa.select(*keys, *(sa.func.sum(rollups.c[name]) for name in self.sums))
            .where(*self._rolled_where())
            .group_by(*keys)
        )
        rows = self.connection.execute(query).all()
        if not rows:
            return _ints(), {}
        columns = list(zip(*rows, strict=True))
        starts = [start * 1000 for start in columns[0]]
        ids = self.groups.ids(self._windows(starts), columns[1 : 1 + len(self.by)])
        sums = _sums(self.sums, columns[1 + len(self.by) :])
        return ids, sums

    def rolled_sketches(self) -> list[tuple[IntArray, list[bytes], list[bytes]]]:
        """Every rollup row's latency and TTFT sketches, with their group ids."""
        if not self.plan.rolled:
            return []
        query = sa.select(
            rollups.c.bucket_start,
            *(rollups.c[name] for name in self.by),
            rollups.c.latency_sketch,
            rollups.c.ttft_sketch,
        ).where(*self._rolled_where())
        rows = self.connection.execute(query).all()
        if not rows:
            return []
        columns = list(zip(*rows, strict=True))
        starts = [start * 1000 for start in columns[0]]
        # Every sketch row was summed by `rolled_sums` first, so its group is known.
        ids = self.groups.known(self._windows(starts), columns[1 : 1 + len(self.by)])
        return [(ids, list(columns[-2]), list(columns[-1]))]

    def _time_group(self) -> tuple[int | None, list[sa.ColumnElement[Any]]]:
        """A bucket width that divides every inner edge, and the SQL bucket of a call.

        Calls are summed per (bucket, group) and each bucket falls in one window: a time series
        by hour sums per hour, a summary (no inner edge) per group alone.
        """
        inner = [int(edge) for edge in self.edges[1:-1]]
        if not inner:
            return None, []
        width = math.gcd(*inner)
        return width, [calls.c.started_ms // width]

    def _raw_where(self) -> list[sa.ColumnElement[bool]]:
        started = calls.c.started_ms
        ranges = [sa.and_(started >= a, started < b) for a, b in self.plan.raw]
        return [sa.or_(*ranges), *call_conditions(self.filters)]

    def raw_sums(self) -> tuple[IntArray, dict[str, Any]]:
        """Raw calls summed by SQL per (bucket, group), as a rollup row sums them."""
        if not self.plan.raw:
            return _ints(), {}
        width, bucket = self._time_group()
        # Grouped by expressions, not columns: SQLite would otherwise walk the (user, started_ms)
        # index for its order, a skip-scan slower than the time range.
        keys = [*bucket, *(calls.c[name] + "" for name in self.by)]
        selected = [_RAW_SUMS[name] for name in self.sums]
        query = sa.select(*keys, *selected).where(*self._raw_where()).group_by(*keys)
        calls_at = len(keys)
        # Without any key, SQL answers one row even for no calls at all: drop it.
        rows = [row for row in self.connection.execute(query) if row[calls_at]]
        if not rows:
            return _ints(), {}
        columns = list(zip(*rows, strict=True))
        if width is None:
            windows = np.zeros(len(rows), np.int64)
        else:
            starts = np.maximum(np.asarray(columns.pop(0), np.int64) * width, self.edges[0])
            windows = self._windows(starts.tolist())
        ids = self.groups.ids(windows, columns[: len(self.by)])
        return ids, _sums(self.sums, columns[len(self.by) :])

    def raw_values(self) -> tuple[IntArray, FloatArray, FloatArray]:
        """Every raw call's latency and time to first token (NaN if none), with its group id."""
        if not self.plan.raw:
            return _ints(), np.zeros(0), np.zeros(0)
        # With one window, every call is in it: no need to read when it started.
        timed = len(self.edges) > 2
        query = sa.select(
            *([calls.c.started_ms] if timed else []),
            *(calls.c[name] for name in self.by),
            calls.c.latency_ms,
            calls.c.ttft_ms,
        ).where(*self._raw_where())
        rows = self.connection.execute(query).all()
        if not rows:
            return _ints(), np.zeros(0), np.zeros(0)
        columns = list(zip(*rows, strict=True))
        windows = self._windows(columns.pop(0)) if timed else np.zeros(len(rows), np.int64)
        # Every call was summed by `raw_sums` first, so its group is known.
        ids = self.groups.known(windows, columns[: len(self.by)])
        return (
            ids,
            np.asarray(columns[-2], np.float64),
            np.asarray(columns[-1], np.float64),
        )


def _sums(names: Sequence[str], columns: Sequence[Sequence[Any]]) -> dict[str, Any]:
    sums: dict[str, Any] = {}
    for name, values in zip(names, columns, strict=True):
        if name in FLOAT_SUMS:
            sums[name] = np.asarray([float(v) for v in values], np.float64)
        else:
            # Exact integers whatever the engine returns (PostgreSQL sums bigints as numeric).
            sums[name] = np.asarray([int(v) for v in values], np.int64)
    return sums


def _count_if(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[Any]:
    return sa.func.sum(sa.case((condition, 1), else_=0))


def _raw_sums() -> dict[str, sa.ColumnElement[Any]]:
    """SQL for the sums of `rollup.rollup_rows`, over raw calls (the same rules)."""
    c = calls.c
    generating = c.latency_ms - sa.func.coalesce(c.ttft_ms, 0.0)
    fast = sa.and_(c.status == "ok", c.output_tokens > 0, generating > 0)
    tokens = (
        "input_tokens",
        "output_tokens",
        "cached_input_tokens",
        "cache_write_tokens",
        "reasoning_tokens",
    )
    sums: dict[str, sa.ColumnElement[Any]] = {
        "calls": sa.func.count(),
        "errors": _count_if(c.status == "error"),
        "cancelled": _count_if(c.status == "cancelled"),
        "unpriced": _count_if(c.cost_nusd.is_(None)),
        "cost_nusd": sa.func.coalesce(sa.func.sum(c.cost_nusd), 0),
        **{name: sa.func.sum(c[name]) for name in tokens},
        "cache_hits": _count_if(c.cache == "hit"),
        "cache_lookups": _count_if(c.cache.in_(("hit", "miss"))),
        "latency_sum_ms": sa.func.sum(c.latency_ms),
        "ttft_count": sa.func.count(c.ttft_ms),
        "ttft_sum_ms": sa.func.coalesce(sa.func.sum(c.ttft_ms), 0.0),
        "speed_count": _count_if(fast),
        "speed_sum": sa.func.coalesce(
            sa.func.sum(sa.case((fast, c.output_tokens * 1000.0 / generating), else_=0.0)), 0.0
        ),
    }
    return sums


_RAW_SUMS = _raw_sums()


def _ints() -> IntArray:
    return np.zeros(0, np.int64)
