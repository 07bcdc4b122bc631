"""Stored rows into per-group totals: rollups where they can answer, raw calls where they must.

`collect` is what every aggregate query runs. It takes the edges of one or more adjacent
windows (a summary has one window; a time series has one per bucket), the filters and the
fields to group by, and returns for each (window, group) the same sums a rollup row holds, plus
latency and time-to-first-token percentiles.

When every filter and group is a rollup dimension, the windows are covered by `plan.cover`:
SQL sums the rollup rows, their sketches are merged (`SketchMerger`), and raw calls are read only
for the partial minutes at the edges; percentiles are then within 1% (``"sketch"``). When no
filter or group is anything but ``provider`` and ``model`` and the answer reads every sum that
rows are checked for (a summary, a time series, a report by model: not a spend view, whose
check is the cost's alone), the model rollups answer the same way
(`aivitals.store.model_rollup`: a few rows a bucket instead of one per rollup key, holding the
counts of the out-of-range ``rollups`` rows that an older writer left, so ``skipped_rows`` is
the same). When a filter or group is ``user`` and the others are among the user rollups' dimensions (user,
provider, model), the user rollups answer the same way, by whole hours and days
(`aivitals.store.user_rollup`), raw calls the hours the window cuts. When any other filter or
group needs ``user``, every call in the window is read and percentiles are exact
(``"exact"``); so are they when the window is too short to hold a whole bucket.

Rows with a value out of range (`aivitals.store.bounds`: only older versions or other tools
wrote them) are left out and counted per group in ``skipped_rows`` (`aivitals.query.sums`); a
rollup row whose sketch alone is out of range keeps its sums, and its sketch is left out of the
percentiles and counted the same way.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa

from aivitals.query.distribution import (
    FloatArray,
    IntArray,
    SketchMerger,
    exact_quantiles,
    usable_sketches,
)
from aivitals.query.filters import (
    Filters,
    call_conditions,
    model_rolled,
    needs_calls,
    rollup_conditions,
    user_rolled,
)
from aivitals.query.plan import Plan, cover
from aivitals.query.sums import (
    CHECKED_SUMS,
    FLOAT_SUMS,
    RAW_SUMS,
    ROLLED_SUMS_OF,
    SumOf,
    fast_columns,
    join_safe,
    overflowed,
    safe_columns,
    usable_call,
    usable_rollup,
)
from aivitals.store.model_rollup import SKIP_FIELDS
from aivitals.store.rollup import SUM_FIELDS
from aivitals.store.schema import (
    GRANULARITIES,
    USER_GRANULARITIES,
    calls,
    model_rollups,
    rollups,
    user_rollups,
)

Method = Literal["exact", "sketch"]
GroupKey = tuple[Any, ...]
"""(window index, value of each ``by`` field...); absent values are None."""

QUANTILES = (0.5, 0.95, 0.99, 1.0)
"""p50, p95, p99 and the maximum, by `aivitals.percentile`'s rule (1.0 is the largest value)."""
SKIPPED = "skipped_rows"
INT_SUMS = (*(name for name in SUM_FIELDS if name not in FLOAT_SUMS), SKIPPED)
"""The integer sums of `Totals.ints`: a rollup row's, and the rows skipped as out of range."""
# Integer sums stay in int64 while every part added could not reach this; beyond it they are
# Python integers (a numpy object array), exact however large.
_INT64_HEADROOM = 2.0**62

Sums = tuple[IntArray, dict[str, Any]]
"""Group ids, and per sum name one value per id."""


@dataclass(frozen=True, slots=True)
class Totals:
    """Sums and percentiles per group; group ``i`` is ``keys[i]``."""

    keys: list[GroupKey]
    ints: dict[str, npt.NDArray[Any]]
    """Each of `INT_SUMS`: int64, or Python integers (dtype object) where int64 could overflow."""
    floats: dict[str, FloatArray]
    latency: FloatArray
    """(groups, len(QUANTILES)): p50, p95, p99, max; NaN for a group without calls."""
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
    ttft: bool = True,
) -> Totals:
    """Totals per (window, group) for the windows ``[b0, b1), [b1, b2), ...``.

    ``coarsest`` caps the rollup granularity (in seconds) used, so that no rollup bucket spans
    two windows whose edges are not aligned to it. ``overall`` adds the totals of each window
    over all groups, read in the same pass (a summary beside its breakdown). ``sums`` names the
    sums wanted (``calls`` always is); the others are left at zero, which spares the raw scan.
    ``ttft=False`` leaves the time-to-first-token percentiles out (NaN): an answer that shows
    none spares their merge, a third of an hourly series' time. Which rows are used and counted
    as skipped stays the same (a row's TTFT sketch is still checked).
    """
    sums = ("calls", *(name for name in sums if name != "calls"))
    table = rollups
    if user_rolled(filters, by):
        table = user_rollups
        plan = cover(boundaries_ms, coarsest=coarsest, granularities=USER_GRANULARITIES)
    elif needs_calls(filters, by):
        plan = Plan(raw=((boundaries_ms[0], boundaries_ms[-1]),), rolled=())
    else:
        plan = cover(boundaries_ms, coarsest=coarsest)
        if model_rolled(filters, by) and set(_read(sums, percentiles)) >= CHECKED_SUMS:
            table = model_rollups
    method: Method = "sketch" if plan.rolled else "exact"
    reader = _Reader(
        connection,
        plan,
        filters,
        tuple(by),
        np.asarray(boundaries_ms, np.int64),
        sums=sums,
        percentiles=percentiles,
        table=table,
    )
    # Every read first, so that every group is known before the arrays are sized.
    summed = [reader.rolled_sums(), reader.raw_sums()]
    raw_ids, raw_latency, raw_ttft = (
        reader.raw_values() if percentiles else (_ints(), np.zeros(0), np.zeros(0))
    )
    sketches = reader.rolled_sketches() if percentiles and method == "sketch" else []
    keys = reader.groups.keys
    n = len(keys)
    # Ids n, n + 1, ... are the windows themselves, when their overall figures are wanted.
    windows = len(boundaries_ms) - 1 if overall else 0
    parents = np.asarray([key[0] for key in keys], np.int64) + n
    parts = [*summed, (reader.skipped_ids(), {SKIPPED: reader.skipped_counts()})]
    ints = {name: _accumulator(name, parts, n + windows) for name in INT_SUMS}
    floats = {name: np.zeros(n + windows) for name in FLOAT_SUMS}
    for ids, values_of in parts:
        for name, values in values_of.items():
            target = ints[name] if name in ints else floats[name]
            # Python integers into Python integers: numpy's int64 refuses to grow past 2^63.
            np.add.at(target, ids, values.astype(object) if target.dtype == object else values)
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
    ttft_quantiles = np.full((n + windows, len(QUANTILES)), np.nan)
    if percentiles and method == "exact":
        latency = exact_quantiles(both(raw_ids), twice(raw_latency), n + windows, QUANTILES)
        if ttft:
            ttft_quantiles = exact_quantiles(both(raw_ids), twice(raw_ttft), n + windows, QUANTILES)
    elif percentiles:
        latency_merger, ttft_merger = SketchMerger(n + windows), SketchMerger(n + windows)
        for ids, latency_blobs, ttft_blobs in sketches:
            factor = 2 if windows else 1
            latency_merger.add_blobs(both(ids), latency_blobs * factor)
            if ttft:
                ttft_merger.add_blobs(both(ids), ttft_blobs * factor)
        latency_merger.add_values(both(raw_ids), twice(raw_latency))
        latency = latency_merger.quantiles(QUANTILES)
        if ttft:
            ttft_merger.add_values(both(raw_ids), twice(raw_ttft))
            ttft_quantiles = ttft_merger.quantiles(QUANTILES)
    whole = None
    if windows:
        whole = Totals(
            [(i,) for i in range(windows)],
            {name: values[n:] for name, values in ints.items()},
            {name: values[n:] for name, values in floats.items()},
            latency[n:],
            ttft_quantiles[n:],
            method,
        )
    return Totals(
        keys,
        {name: values[:n] for name, values in ints.items()},
        {name: values[:n] for name, values in floats.items()},
        latency[:n],
        ttft_quantiles[:n],
        method,
        whole,
    )


def _read(sums: Sequence[str], percentiles: bool) -> tuple[str, ...]:
    """The sums whose values a row must have in range to be used: those the answer reads."""
    return (*sums, *(("latency_sum_ms", "ttft_sum_ms") if percentiles else ()))


def _accumulator(name: str, parts: Sequence[Sums], size: int) -> npt.NDArray[Any]:
    """Zeros to add ``name``'s parts into: int64 when their total cannot overflow it."""
    reach = 0.0
    for _, values_of in parts:
        values = values_of.get(name)
        if values is None or len(values) == 0:
            continue
        if values.dtype == object:
            return np.zeros(size, object)
        reach += float(np.abs(values.astype(np.float64)).sum())
    # Twice: each window's overall figure adds its groups up once more.
    if 2 * reach >= _INT64_HEADROOM:
        return np.zeros(size, object)
    return np.zeros(size, np.int64)


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
        percentiles: bool,
        table: sa.Table = rollups,
    ) -> None:
        self.connection = connection
        self.plan = plan
        self.filters = filters
        self.by = by
        self.edges = edges
        self.groups = _Groups()
        self.sums = sums
        self.table = table
        """The rollups read: ``rollups``, or the user or model rollups (the same sums and
        sketches)."""
        read = _read(sums, percentiles)
        self._usable_call = usable_call(read)
        self._usable_rollup = usable_rollup(read, table)
        self._rolled_specs = ROLLED_SUMS_OF[table.name]
        self._skips: tuple[str, ...] = ()
        if table is model_rollups:
            # The rollups rows the upgrade left out, counted as a read of them counts them:
            # those whose sketches alone it left out only when the answer merges sketches.
            self._skips = SKIP_FIELDS if percentiles else SKIP_FIELDS[:1]
            r = table.c
            self._rolled_specs = {
                **self._rolled_specs,
                **{name: SumOf("int", r[name]) for name in self._skips},
            }
            # A row of skipped rollups rows alone holds no call and no sum: usable, and empty.
            empty = sa.and_(r.calls == 0, *(r[name] == 0 for name in SUM_FIELDS))
            self._usable_rollup = sa.or_(self._usable_rollup, empty)
        # Whether the sums met unusable rows; only then must the rows read after them (sketches,
        # raw values) be checked one by one. A store this version wrote holds none.
        self._unusable = {"rolled": False, "raw": False}
        self._skipped_ids: list[IntArray] = []
        self._skipped: list[IntArray] = []

    def skipped_ids(self) -> IntArray:
        return np.concatenate(self._skipped_ids) if self._skipped_ids else _ints()

    def skipped_counts(self) -> IntArray:
        """Rows left out as out of range, one count per id of `skipped_ids`."""
        return np.concatenate(self._skipped) if self._skipped else _ints()

    def _skip(self, ids: IntArray, counts: Sequence[int]) -> None:
        if len(ids):
            self._skipped_ids.append(ids)
            self._skipped.append(np.asarray(counts, np.int64))

    def _windows(self, times_ms: Sequence[int]) -> IntArray:
        """The index of the window each instant falls in."""
        found = np.searchsorted(self.edges, np.asarray(times_ms, np.int64), side="right")
        return found.astype(np.int64) - 1

    def _rolled_where(self) -> list[sa.ColumnElement[bool]]:
        column = self.table.c
        ranges = [
            sa.and_(column.granularity == g, column.bucket_start >= a, column.bucket_start < b)
            for g, a, b in self.plan.rolled
        ]
        return [sa.or_(*ranges), *rollup_conditions(self.filters, self.table)]

    def _rolled_windows(self, columns: list[Any]) -> IntArray:
        return self._windows([start * 1000 for start in columns.pop(0)])

    def rolled_sums(self) -> Sums:
        """Rollup sums per (bucket, group), summed by SQL, with their group ids."""
        if not self.plan.rolled:
            return _ints(), {}
        keys: list[sa.ColumnElement[Any]] = [
            self.table.c.bucket_start,
            *(self.table.c[name] for name in self.by),
        ]
        return self._summed(
            "rolled",
            keys,
            specs=self._rolled_specs,
            where=self._rolled_where(),
            usable=self._usable_rollup,
            windows_of=self._rolled_windows,
        )

    def rolled_sketches(self) -> list[tuple[IntArray, list[bytes], list[bytes]]]:
        """The usable rollup rows' latency and TTFT sketches, with their group ids."""
        if not self.plan.rolled:
            return []
        query = sa.select(
            self.table.c.bucket_start,
            *(self.table.c[name] for name in self.by),
            self.table.c.latency_sketch,
            self.table.c.ttft_sketch,
        ).where(*self._rolled_where(), *self._checks("rolled"))
        rows = self.connection.execute(query).all()
        if not rows:
            return []
        columns = list(zip(*rows, strict=True))
        ids = self.groups.ids(self._rolled_windows(columns), columns[: len(self.by)])
        latency_blobs, ttft_blobs = columns[len(self.by) :]
        usable = usable_sketches(latency_blobs) & usable_sketches(ttft_blobs)
        if usable.all():
            return [(ids, list(latency_blobs), list(ttft_blobs))]
        # The row's sums were usable and stay counted; its sketches are left out.
        bad = np.flatnonzero(~usable)
        self._skip(ids[bad], [1] * len(bad))
        kept = np.flatnonzero(usable).tolist()
        return [(ids[kept], [latency_blobs[i] for i in kept], [ttft_blobs[i] for i in kept])]

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

    def raw_sums(self) -> Sums:
        """Raw calls summed by SQL per (bucket, group), as a rollup row sums them."""
        if not self.plan.raw:
            return _ints(), {}
        width, bucket = self._time_group()

        def windows(columns: list[Any]) -> IntArray:
            if width is None:
                return np.zeros(len(columns[0]) if columns else 0, np.int64)
            starts = np.maximum(np.asarray(columns.pop(0), np.int64) * width, self.edges[0])
            return self._windows(starts.tolist())

        # Grouped by expressions, not columns: SQLite would otherwise walk the (user, started_ms)
        # index for its order, a skip-scan slower than the time range.
        keys = [*bucket, *(calls.c[name] + "" for name in self.by)]
        return self._summed(
            "raw",
            keys,
            specs=RAW_SUMS,
            where=self._raw_where(),
            usable=self._usable_call,
            windows_of=windows,
        )

    def _checks(self, source: str) -> list[sa.ColumnElement[bool]]:
        """The usable condition for rows of ``source`` read after its sums, when one is needed."""
        if not self._unusable[source]:
            return []
        return [self._usable_rollup if source == "rolled" else self._usable_call]

    def _summed(
        self,
        source: str,
        keys: list[sa.ColumnElement[Any]],
        *,
        specs: dict[str, SumOf],
        where: list[sa.ColumnElement[bool]],
        usable: sa.ColumnElement[bool],
        windows_of: Callable[[list[Any]], IntArray],
    ) -> Sums:
        """``specs``' sums of the rows ``where`` selects, per key, usable rows only; the other
        rows are counted as skipped (`aivitals.query.sums` says how)."""
        skips = self._skips if source == "rolled" else ()
        names = (*self.sums, *skips)
        unusable = sa.func.sum(sa.case((usable, 0), else_=1))
        query = sa.select(*keys, unusable, *fast_columns(specs, names)).where(*where)
        if keys:
            query = query.group_by(*keys)
        k = len(keys)
        try:
            rows = self.connection.execute(query).all()
        except sa.exc.DBAPIError as exc:
            if not overflowed(exc):
                raise
            # PostgreSQL refuses every statement of a failed transaction: start a new one.
            self.connection.rollback()
            self._unusable[source] = True
            return self._summed_safely(
                keys, specs=specs, names=names, where=where, usable=usable, windows_of=windows_of
            )
        if any(row[k] for row in rows):
            self._unusable[source] = True
            return self._summed_safely(
                keys, specs=specs, names=names, where=where, usable=usable, windows_of=windows_of
            )
        # Without any key, SQL answers one row even for no rows at all: drop it (a group of
        # skipped rows alone stays, for its count).
        skipped_at = k + 1 + len(self.sums)
        kept = [row[:k] + row[k + 1 :] for row in rows if row[k + 1] or any(row[skipped_at:])]
        if not kept:
            return _ints(), {}
        columns = [list(column) for column in zip(*kept, strict=True)]
        ids = self.groups.ids(windows_of(columns), columns[: len(self.by)])
        found = _sums(names, columns[len(self.by) :])
        self._skip_counted(ids, [found.pop(name) for name in skips])
        return ids, found

    def _skip_counted(self, ids: IntArray, counts: Sequence[IntArray]) -> None:
        """Count the skipped rows a model rollup row holds, per group id."""
        if counts:
            total = np.sum(counts, axis=0)
            kept = np.flatnonzero(total)
            self._skip(ids[kept], total[kept].tolist())

    def _summed_safely(
        self,
        keys: list[sa.ColumnElement[Any]],
        *,
        specs: dict[str, SumOf],
        names: tuple[str, ...],
        where: list[sa.ColumnElement[bool]],
        usable: sa.ColumnElement[bool],
        windows_of: Callable[[list[Any]], IntArray],
    ) -> Sums:
        query = sa.select(*keys, *safe_columns(specs, names, usable)).where(*where)
        if keys:
            query = query.group_by(*keys)
        k = len(keys)
        rows = []
        for row in self.connection.execute(query):
            skipped, values = join_safe(specs, names, row[k:])
            # Without any key, SQL answers one row even for no rows at all: drop it.
            if skipped or values[0] or any(values[len(self.sums) :]):
                rows.append((*row[:k], skipped, *values))
        if not rows:
            return _ints(), {}
        columns = [list(column) for column in zip(*rows, strict=True)]
        ids = self.groups.ids(windows_of(columns), columns[: len(self.by)])
        rest = columns[len(self.by) :]
        self._skip(ids, [int(v) for v in rest[0]])
        found = _sums(names, rest[1:])
        self._skip_counted(ids, [found.pop(name) for name in names[len(self.sums) :]])
        return ids, found

    def raw_values(self) -> tuple[IntArray, FloatArray, FloatArray]:
        """Every usable raw call's latency and time to first token (NaN if none), with its group."""
        if not self.plan.raw:
            return _ints(), np.zeros(0), np.zeros(0)
        # With one window, every call is in it: no need to read when it started.
        timed = len(self.edges) > 2
        query = sa.select(
            *([calls.c.started_ms] if timed else []),
            *(calls.c[name] for name in self.by),
            calls.c.latency_ms,
            calls.c.ttft_ms,
        ).where(*self._raw_where(), *self._checks("raw"))
        rows = self.connection.execute(query).all()
        if not rows:
            return _ints(), np.zeros(0), np.zeros(0)
        columns = list(zip(*rows, strict=True))
        windows = self._windows(columns.pop(0)) if timed else np.zeros(len(rows), np.int64)
        ids = self.groups.ids(windows, columns[: len(self.by)])
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
            continue
        # Exact integers whatever the engine returns (PostgreSQL sums bigints as numeric).
        exact = [int(v) for v in values]
        try:
            sums[name] = np.asarray(exact, np.int64)
        except OverflowError:
            sums[name] = np.asarray(exact, object)
    return sums


def _ints() -> IntArray:
    return np.zeros(0, np.int64)
