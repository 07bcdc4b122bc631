"""Model rollups: calls folded per minute, hour and day by (provider, model) alone (schema 9).

``rollups`` keep nine dimensions, so a bucket holds a row per combination of them: the hourly
series over 30 days merged about 140,000 rows' sketches at ten million calls. These rows keep
only the model (with its provider), at the rollups' granularities, so an answer that filters
and groups by nothing else (the unfiltered summary and series, the report by model) reads a few
rows a bucket; `aivitals.query.collect` picks them, and reads raw calls for the minutes the
window cuts, as it does for ``rollups``.

The writer folds each batch of new calls in the same transaction as the calls (`fold`). An older
store is filled once from its ``rollups`` rows, not from its calls (`backfill`, the schema-9
upgrade): retention may have deleted the calls behind old rollups, and an older writer may have
folded values out of range into them, which reads of ``rollups`` leave out and count in
``skipped_rows``. The backfill leaves out and counts the same rows (``skipped_rows``, and
``skipped_sketches`` for a row whose sums are usable but whose sketches are not), so an answer
read here is the answer read from ``rollups``, counts included.

>>> from aivitals.model import Call
>>> rows = model_rows([Call(provider="openai", model="gpt-4o", latency_ms=120.0)])
>>> sorted((row["granularity"], row["model"], row["calls"], row["skipped_rows"]) for row in rows)
[(60, 'gpt-4o', 1, 0), (3600, 'gpt-4o', 1, 0), (86400, 'gpt-4o', 1, 0)]
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from aivitals.model import Call
from aivitals.store import bounds
from aivitals.store.rollup import FLOAT_FIELDS, SUM_FIELDS, Figures
from aivitals.store.rollup_upsert import RollupUpsert
from aivitals.store.schema import GRANULARITIES, MODEL_ROLLUP_KEYS, model_rollups, rollups
from aivitals.store.user_rollup import Narrow, user_rows

MODELS = Narrow(model_rollups, MODEL_ROLLUP_KEYS, GRANULARITIES)
SKIP_FIELDS = ("skipped_rows", "skipped_sketches")
"""What a model rollup row counts of the ``rollups`` rows the upgrade left out."""
_NO_SKIPS = dict.fromkeys(SKIP_FIELDS, 0)

logger = logging.getLogger("aivitals.store")

Progress = Callable[[int, int], None]
"""Called by `backfill` with (days done, days in all)."""


def model_rows(
    batch: Sequence[Call],
    *,
    costs_nusd: Sequence[int | None] | None = None,
    figures: Sequence[Figures | None] | None = None,
) -> list[dict[str, Any]]:
    """One row per (granularity, bucket, provider, model) with the batch's sums and sketches,
    by `user_rollup.user_rows`' rules (calls out of range left out), nothing skipped."""
    rows = user_rows(batch, costs_nusd=costs_nusd, kind=MODELS, figures=figures)
    for row in rows:
        row.update(_NO_SKIPS)
    return rows


_UPSERTS: dict[tuple[str, str], RollupUpsert] = {}


def _upsert(dialect: Dialect) -> RollupUpsert:
    """The writer's fold (sums added by the database, sketches merged), once per dialect.

    Its update sets the sums and sketches only: a row's skip counts stay what the upgrade left.
    """
    key = (dialect.name, dialect.driver)
    found = _UPSERTS.get(key)
    if found is None:
        found = _UPSERTS[key] = RollupUpsert(model_rollups, MODELS.key_columns, dialect)
    return found


def fold(
    connection: sa.Connection,
    batch: Sequence[Call],
    costs_nusd: Sequence[int | None],
    *,
    figures: Sequence[Figures | None] | None = None,
) -> None:
    """Add newly stored calls into their model rollups, inside the writer's transaction.

    ``costs_nusd`` is ``to_nusd(call.cost_usd)`` of each call, as the writer has them;
    ``figures``, `rollup.call_figures` of the calls likewise.
    """
    rows = model_rows(batch, costs_nusd=costs_nusd, figures=figures)
    _upsert(connection.dialect).fold(connection, rows)


def backfill(connection: sa.Connection, progress: Progress | None = None) -> int:
    """Rebuild every model rollup from the stored ``rollups`` rows, a day of buckets at a time;
    return the calls folded.

    A ``rollups`` row is folded when a read of every sum would use it (`aivitals.query.sums`'
    `usable_rollup`), else counted in ``skipped_rows``; a folded row whose sketches a read
    would leave out (`usable_sketches`) keeps its sums, and is counted in ``skipped_sketches``
    instead of merged. Sums are SQL's, exact (split in two halves when a plain sum would
    overflow); sketches are merged with numpy, bin for bin as `Sketch.merge` merges them.
    """
    # Imported here: the query side imports the store, and this runs only at an upgrade.
    from aivitals.query.distribution import usable_sketches  # noqa: PLC0415
    from aivitals.query.sums import ROLLED_SUMS, usable_rollup  # noqa: PLC0415

    connection.execute(sa.delete(model_rollups))
    r = rollups.c
    days = int(
        connection.scalar(
            sa.select(sa.func.count(sa.distinct(r.bucket_start))).where(
                r.granularity == GRANULARITIES[-1]
            )
        )
        or 0
    )
    usable = usable_rollup(SUM_FIELDS)
    keys: list[sa.ColumnElement[Any]] = [r.bucket_start, r.provider, r.model]
    folded = 0
    done = 0
    start = _next_day(connection, None)
    while start is not None:
        done += 1
        for granularity in GRANULARITIES:
            where = [
                r.granularity == granularity,
                r.bucket_start >= start,
                r.bucket_start < start + _DAY,
            ]
            summed = _sums(connection, keys, where, usable, ROLLED_SUMS)
            if not summed:
                continue
            found = connection.execute(
                sa.select(
                    *keys, sa.case((usable, 1), else_=0), r.latency_sketch, r.ttft_sketch
                ).where(*where)
            ).all()
            index = {key: i for i, key in enumerate(summed)}
            columns = list(zip(*found, strict=True))
            groups = np.fromiter(
                (index[key] for key in zip(*columns[:3], strict=True)), np.int64, len(found)
            )
            kept = np.asarray([entry[2] for entry in summed.values()], bool)
            used = np.asarray(columns[3], bool) & kept[groups]
            latency, ttft = list(columns[4]), list(columns[5])
            merged = used & usable_sketches(latency) & usable_sketches(ttft)
            bad_sketches = np.bincount(groups[used & ~merged], minlength=len(summed))
            chosen = np.flatnonzero(merged).tolist()
            blobs = {
                name: merged_blobs(groups[chosen], [values[i] for i in chosen], len(summed))
                for name, values in (("latency_sketch", latency), ("ttft_sketch", ttft))
            }
            rows = []
            for i, ((bucket, provider, model), (skipped, sums, _)) in enumerate(summed.items()):
                row = {
                    "granularity": granularity,
                    "bucket_start": bucket,
                    "provider": provider,
                    "model": model,
                    **sums,
                    "latency_sketch": blobs["latency_sketch"][i],
                    "ttft_sketch": blobs["ttft_sketch"][i],
                    "skipped_rows": skipped,
                    "skipped_sketches": int(bad_sketches[i]),
                }
                rows.append(row)
                if granularity == GRANULARITIES[-1]:
                    folded += row["calls"]
            connection.execute(model_rollups.insert(), rows)
        start = _next_day(connection, start + _DAY)
        if progress is not None:
            progress(done, max(days, done) if start is not None else done)
    return folded


_DAY = 86_400


def _next_day(connection: sa.Connection, since: int | None) -> int | None:
    """The start of the first UTC day from ``since`` on that holds a ``rollups`` row.

    Day by day over the days that hold rows, not every day from the first to the last: an
    older writer stored a call that started in the year 318,857.
    """
    r = rollups.c
    found = [
        connection.scalar(
            sa.select(sa.func.min(r.bucket_start)).where(
                r.granularity == granularity,
                *([] if since is None else [r.bucket_start >= since]),
            )
        )
        for granularity in GRANULARITIES
    ]
    starts = [int(value) for value in found if value is not None]
    return min(starts) // _DAY * _DAY if starts else None


Summed = dict[tuple[Any, ...], tuple[int, dict[str, Any], bool]]
"""(bucket, provider, model) to (rows skipped, the usable rows' sums, whether they are kept)."""


def _sums(
    connection: sa.Connection,
    keys: list[sa.ColumnElement[Any]],
    where: list[sa.ColumnElement[bool]],
    usable: sa.ColumnElement[bool],
    specs: dict[str, Any],
) -> Summed:
    """The usable rows' sums per key and the unusable rows counted: plain sums first, as
    `aivitals.query.collect` reads them; in halves when a row is unusable or a sum overflows."""
    from aivitals.query.sums import (  # noqa: PLC0415
        fast_columns,
        join_safe,
        overflowed,
        safe_columns,
    )

    unusable = sa.func.sum(sa.case((usable, 0), else_=1))
    fast = sa.select(*keys, unusable, *fast_columns(specs, SUM_FIELDS)).where(*where)
    found: Sequence[Any] | None = None
    try:
        # A savepoint: on PostgreSQL a failed statement would abort the whole upgrade.
        with connection.begin_nested():
            found = connection.execute(fast.group_by(*keys)).all()
    except sa.exc.DBAPIError as exc:
        if not overflowed(exc):
            raise
    k = len(keys)
    summed: Summed = {}
    if found is not None and not any(row[k] for row in found):
        for row in found:
            summed[tuple(row[:k])] = (0, _exact(row[k + 1 :]), True)
        return summed
    count = sa.func.count()
    safe = sa.select(*keys, count, *safe_columns(specs, SUM_FIELDS, usable)).where(*where)
    for row in connection.execute(safe.group_by(*keys)):
        skipped, values = join_safe(specs, SUM_FIELDS, row[k + 1 :])
        sums, kept = _exact(values), True
        if any(sums[name] > bounds.INT64_MAX for name in SUM_FIELDS if name not in FLOAT_FIELDS):
            # No 64-bit column holds it (a read of ``rollups`` would add these rows exactly):
            # the model row keeps none of them, counts them all as skipped, and says so.
            logger.error(
                "upgrading to schema 9: the model rollup %s at %s would outgrow its 64-bit "
                "sums; its %d rollup rows are counted as skipped instead",
                row[2],
                row[0],
                row[k],
            )
            skipped, sums, kept = int(row[k]), _exact([0] * len(SUM_FIELDS)), False
        summed[tuple(row[:k])] = (skipped, sums, kept)
    return summed


def _exact(values: Sequence[Any]) -> dict[str, Any]:
    """Sums as the columns take them: floats, and exact integers whatever the engine returns
    (PostgreSQL sums bigints as numeric)."""
    return {
        name: float(value) if name in FLOAT_FIELDS else int(value)
        for name, value in zip(SUM_FIELDS, values, strict=True)
    }


def merged_blobs(groups: npt.NDArray[np.int64], blobs: Sequence[bytes], n: int) -> list[bytes]:
    """For each group id below ``n``, its ``blobs`` (stored sketches) merged, as
    `sketch.merge_all(blobs).to_bytes()` gives them, byte for byte.

    Vectorised: a day of minute rollups is hundreds of thousands of sketches, and merging them
    one `Sketch` at a time would be a Python loop over each.
    """
    sizes = np.fromiter(map(len, blobs), np.int64, len(blobs)) // 4
    present = sizes > 0  # an empty blob reads as an empty sketch
    groups, sizes = groups[present], sizes[present]
    data = b"".join(blob for blob in blobs if blob)
    words = np.frombuffer(data, "<u4").astype(np.int64)
    signed = np.frombuffer(data, "<i4").astype(np.int64)
    starts = np.cumsum(sizes) - sizes
    zeros = np.bincount(groups, weights=words[starts + 1], minlength=n).astype(np.int64)
    bins = sizes - 2
    owner = np.repeat(np.arange(sizes.size), bins)
    at = (np.arange(owner.size) - np.repeat(np.cumsum(bins) - bins, bins)).astype(np.int64)
    keys = signed[starts][owner] + at
    counts = words[starts[owner] + 2 + at]
    bin_groups = groups[owner]
    low = np.zeros(n, np.int64)
    high = np.full(n, -1, np.int64)
    if keys.size:
        has = np.bincount(bin_groups, minlength=n) > 0
        lowest = np.full(n, np.iinfo(np.int64).max)
        highest = np.full(n, np.iinfo(np.int64).min)
        np.minimum.at(lowest, bin_groups, keys)
        np.maximum.at(highest, bin_groups, keys)
        low[has], high[has] = lowest[has], highest[has]
    widths = high - low + 1
    total = 2 + widths
    first = np.cumsum(total) - total
    out = np.zeros(int(total.sum()), np.int64)
    out[first] = low
    out[first + 1] = zeros
    np.add.at(out, first[bin_groups] + 2 + keys - low[bin_groups], counts)
    encoded = (out & 0xFFFFFFFF).astype("<u4").tobytes()
    return [
        encoded[4 * a : 4 * (a + s)] for a, s in zip(first.tolist(), total.tolist(), strict=True)
    ]
