"""User rollups: calls folded per hour and day by (user, provider, model) (schema 8).

``rollups`` leave users out: with every other key their cardinality would multiply the rows.
These rows keep only the user and the model (with its provider), at hours and days, so a
question about users (the top spenders, one user's report by model) reads a few rows per user
and model a day instead of every call; `aivitals.query.collect` picks them when every filter
and group is one of `USER_ROLLUP_KEYS`, and reads raw calls for the hours the window cuts.

The writer folds each batch of new calls in the same transaction as the calls (`fold`); an
older store is filled once from its calls (`backfill`, the schema-8 upgrade). Their scores go
the same way (`aivitals.store.user_score_rollup`).

>>> from aivitals.model import Call
>>> rows = user_rows([Call(provider="openai", model="gpt-4o", latency_ms=120.0, user="ana")])
>>> sorted((row["granularity"], row["user"], row["calls"]) for row in rows)
[(3600, 'ana', 1), (86400, 'ana', 1)]
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from aivitals.model import Call
from aivitals.store import user_score_rollup
from aivitals.store.buckets import Key, grouped, with_copies
from aivitals.store.rollup import COUNTED, SUM_FIELDS, Figures, Group, call_figures
from aivitals.store.rollup_upsert import RollupUpsert
from aivitals.store.schema import (
    USER_GRANULARITIES,
    USER_ROLLUP_KEYS,
    calls,
    user_rollups,
)
from aivitals.store.sketch import group_blobs as _blobs


@dataclass(frozen=True, slots=True)
class Narrow:
    """A rollup table kept by a few dimensions (or none) at some granularities."""

    table: sa.Table
    keys: tuple[str, ...]
    granularities: tuple[int, ...]

    @property
    def key_columns(self) -> tuple[str, ...]:
        return ("granularity", "bucket_start", *self.keys)


USERS = Narrow(user_rollups, USER_ROLLUP_KEYS, USER_GRANULARITIES)
KINDS = (USERS,)
"""The narrow rollups the writer keeps (one so far)."""
KEY_COLUMNS = USERS.key_columns
_FLOAT_AND_COUNTS = ("latency_sum_ms", "ttft_count", "ttft_sum_ms", "speed_count", "speed_sum")

logger = logging.getLogger("aivitals.store")

Progress = Callable[[int, int], None]
"""Called by `backfill` with (days done, days in all)."""


def user_rows(
    batch: Sequence[Call],
    *,
    costs_nusd: Sequence[int | None] | None = None,
    kind: Narrow = USERS,
    figures: Sequence[Figures | None] | None = None,
) -> list[dict[str, Any]]:
    """One row per (granularity, bucket, user, provider, model) with the batch's sums and
    sketches (per ``kind``'s keys and granularities).

    The same figures as `rollup.rollup_rows` (`rollup.call_figures`: the same rules, calls out
    of range left out, which that function logs), keyed by other dimensions. ``figures`` is
    `rollup.call_figures` of ``batch``, when the writer has them.
    """
    if figures is None:
        figures = call_figures(batch, costs_nusd)
    dimensions_of = _dimensions_of(kind.keys)
    dimensions: list[tuple[Any, ...] | None] = []
    seconds: list[int] = []
    for call, figure in zip(batch, figures, strict=True):
        if figure is None:
            dimensions.append(None)
            seconds.append(0)
            continue
        values = dimensions_of(call)
        if None in values:
            values = tuple(value or "" for value in values)
        dimensions.append(values)
        seconds.append(figure[4])
    members, same = grouped(dimensions, seconds, kind.granularities)
    return with_copies(members, _rows(kind, members, figures), same)


def _dimensions_of(names: tuple[str, ...]) -> Callable[[Call], tuple[Any, ...]]:
    """A call's values of ``names`` as a tuple (`operator.attrgetter`, one C call a call)."""
    if len(names) > 1:
        return operator.attrgetter(*names)
    return lambda call: tuple(getattr(call, name) for name in names)


def _rows(
    kind: Narrow, members: dict[Key, list[int]], figures: Sequence[Figures | None]
) -> list[dict[str, Any]]:
    """The rows of the buckets built from their calls (``members``: positions in ``figures``);
    their sketches built all at once by `_blobs` (a `Sketch.of` per row, two a row, was a third
    of a durable write with many users a batch)."""
    rows = []
    latencies: list[float] = []
    ttfts: list[float] = []
    latency_sizes: list[int] = []
    ttft_sizes: list[int] = []
    columns = (*kind.key_columns, "calls", *COUNTED, *_FLOAT_AND_COUNTS)
    for key, indices in members.items():
        if len(indices) == 1:
            # With many users most buckets hold one call: its figures are the sums.
            counts, latency, ttft, speed, _ = cast(Figures, figures[indices[0]])
            latency_of = [latency]
            ttft_of = [] if ttft is None else [ttft]
            speeds = [] if speed is None else [speed]
        else:
            group = Group.of(indices, figures)
            latency_of, ttft_of, speeds = group.latencies, group.ttfts, group.speeds
            # The float sums are Python's in call order, as ever, so they stay what they were
            # bit for bit (numpy would sum pairwise).
            counts = tuple(map(sum, zip(*group.counts, strict=True)))
        head = (
            *key,
            len(indices),
            *counts,
            sum(latency_of),
            len(ttft_of),
            sum(ttft_of),
            len(speeds),
            sum(speeds),
        )
        rows.append(dict(zip(columns, head, strict=True)))
        latencies += latency_of
        ttfts += ttft_of
        latency_sizes.append(len(latency_of))
        ttft_sizes.append(len(ttft_of))
    if rows:
        for name, values, sizes in (
            ("latency_sketch", latencies, latency_sizes),
            ("ttft_sketch", ttfts, ttft_sizes),
        ):
            ends = np.cumsum(np.asarray(sizes, np.int64))
            blobs = _blobs(np.asarray(values, np.float64), ends - np.asarray(sizes, np.int64))
            for row, blob in zip(rows, blobs, strict=True):
                row[name] = blob
    return rows


_UPSERTS: dict[tuple[str, str, str], RollupUpsert] = {}


def _upsert(kind: Narrow, dialect: Dialect) -> RollupUpsert:
    """The writer's fold of rollup rows (one read of the touched rows, one multi-row upsert
    whose sums the database adds), built once per table and dialect."""
    key = (kind.table.name, dialect.name, dialect.driver)
    found = _UPSERTS.get(key)
    if found is None:
        found = _UPSERTS[key] = RollupUpsert(kind.table, kind.key_columns, dialect)
    return found


def fold(
    connection: sa.Connection,
    batch: Sequence[Call],
    costs_nusd: Sequence[int | None],
    *,
    waiting: list[Any] | None = None,
    figures: Sequence[Figures | None] | None = None,
) -> None:
    """Add newly stored calls into their user rollups, inside the writer's transaction.

    ``costs_nusd`` is ``to_nusd(call.cost_usd)`` of each call, as the writer has them. The
    scores that arrived before their calls are folded into the user score rollups here too
    (``waiting``: `score_rollup.waiting_scores` of the batch, when the writer has read it):
    the writer calls this before the batch's own scores go in, as that fold needs.
    """
    user_score_rollup.fold_waiting(connection, [call.id for call in batch], waiting=waiting)
    if figures is None:
        figures = call_figures(batch, costs_nusd)
    for kind in KINDS:
        rows = user_rows(batch, kind=kind, figures=figures)
        _upsert(kind, connection.dialect).fold(connection, rows)


def backfill(
    connection: sa.Connection, progress: Progress | None = None, kind: Narrow = USERS
) -> int:
    """Rebuild every user rollup from the stored calls, a day of calls at a time; return the
    calls folded.

    Sums are SQL's, over the calls a raw read would use (`aivitals.query.sums`: the same
    conditions and the same sums), so exact; sketches are built with numpy from the calls'
    latencies, bin for bin as `Sketch.of` builds them. ``progress`` hears after each day.
    """
    # Imported here: the query side imports the store, and this runs only at an upgrade.
    from aivitals.query.sums import FLOAT_SUMS, RAW_SUMS, fast_columns, usable_call  # noqa: PLC0415

    connection.execute(sa.delete(kind.table))
    day_ms = 86_400_000
    # The days that hold calls, one indexed look-up each, not every day from the first call to
    # the last: an older writer stored a call that started in the year 318,857, and a range
    # over those days (116 million of them) would never end.
    in_all = int(
        connection.scalar(sa.select(sa.func.count(sa.distinct(calls.c.started_ms // day_ms)))) or 0
    )
    if not in_all:
        return 0
    usable = usable_call((*SUM_FIELDS, "latency_sum_ms", "ttft_sum_ms"))
    dimensions: list[sa.ColumnElement[Any]] = [
        sa.func.coalesce(calls.c[name], "") for name in kind.keys
    ]
    sums = fast_columns(RAW_SUMS, SUM_FIELDS)
    folded = 0
    for done, start_ms in enumerate(_days_with_calls(connection, day_ms), 1):
        where = [calls.c.started_ms >= start_ms, calls.c.started_ms < start_ms + day_ms, usable]
        sketches = _sketches(connection, where, dimensions, kind.granularities)
        for granularity in kind.granularities:
            bucket = calls.c.started_ms // (granularity * 1000) * granularity
            rows = []
            for values in connection.execute(
                sa.select(bucket, *dimensions, *sums).where(*where).group_by(bucket, *dimensions)
            ):
                key = (granularity, *values[: 1 + len(dimensions)])
                row = dict(zip(kind.key_columns, key, strict=True))
                for name, value in zip(SUM_FIELDS, values[1 + len(dimensions) :], strict=True):
                    # Exact integers whatever the engine returns (PostgreSQL: numeric).
                    row[name] = float(value) if name in FLOAT_SUMS else int(value)
                row["latency_sketch"], row["ttft_sketch"] = sketches[key]
                rows.append(row)
            if rows:
                connection.execute(kind.table.insert(), rows)
            if granularity == kind.granularities[-1]:
                folded += sum(row["calls"] for row in rows)
        if progress is not None:
            progress(done, max(in_all, done))
    return folded


def _days_with_calls(connection: sa.Connection, day_ms: int) -> Iterator[int]:
    """The start (ms) of each UTC day that holds a stored call, oldest first."""
    since: int | None = None
    while True:
        first = connection.scalar(
            sa.select(sa.func.min(calls.c.started_ms)).where(
                *([] if since is None else [calls.c.started_ms >= since])
            )
        )
        if first is None:
            return
        start = int(first) // day_ms * day_ms
        yield start
        since = start + day_ms


def _sketches(
    connection: sa.Connection,
    where: list[sa.ColumnElement[bool]],
    dimensions: list[sa.ColumnElement[Any]],
    granularities: Sequence[int],
) -> dict[tuple[Any, ...], tuple[bytes, bytes]]:
    """(granularity, bucket, user, provider, model) to its (latency, ttft) sketches, at every
    granularity, for the calls ``where`` selects (read once)."""
    rows = connection.execute(
        sa.select(calls.c.started_ms, *dimensions, calls.c.latency_ms, calls.c.ttft_ms).where(
            *where
        )
    ).all()
    if not rows:
        return {}
    columns = list(zip(*rows, strict=True))
    names: list[tuple[Any, ...]] = (
        list(zip(*columns[1 : 1 + len(dimensions)], strict=True))
        if dimensions
        else [()] * len(rows)
    )
    distinct = sorted(set(names))
    index = {name: i for i, name in enumerate(distinct)}
    combo = np.fromiter((index[name] for name in names), np.int64, len(names))
    started = np.asarray(columns[0], np.int64)
    latency = np.asarray(columns[-2], np.float64)
    ttft = np.asarray([np.nan if v is None else v for v in columns[-1]], np.float64)
    found: dict[tuple[Any, ...], tuple[bytes, bytes]] = {}
    for granularity in granularities:
        key = started // (granularity * 1000) * granularity * len(distinct) + combo
        order = np.argsort(key, kind="stable")
        ordered = key[order]
        starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
        blobs = zip(_blobs(latency[order], starts), _blobs(ttft[order], starts), strict=True)
        for k, pair in zip(ordered[starts].tolist(), blobs, strict=True):
            found[(granularity, k // len(distinct), *distinct[k % len(distinct)])] = pair
    return found
