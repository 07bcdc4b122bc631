"""Rollups: a batch of calls folded into per-minute, per-hour and per-day rows.

Pure functions, no database: the writer calls `rollup_rows` for each batch and merges the result
into what is stored with `merge_rows`; tests and benchmarks can build the same rows.

>>> from aivitals.model import Call
>>> rows = rollup_rows([Call(provider="openai", model="gpt-4o", latency_ms=120.0)])
>>> sorted(row["granularity"] for row in rows), rows[0]["calls"]
([60, 3600, 86400], 1)

Only calls whose values are within `aivitals.store.bounds` are folded in. The door refuses the
others, so this matters only for calls built around it; such a call is logged and left out of
the rollups (its raw row, if stored, is left out of reads just the same), so one bad value never
sits in a sketch where no retention can reach it. A sum that would outgrow its 64-bit column
(billions of dollars in one bucket) keeps the bucket as it was, logged, rather than fail the
whole write.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from itertools import chain
from typing import Any, cast

import numpy as np

from aivitals.model import Call
from aivitals.store import bounds
from aivitals.store.buckets import grouped, with_copies
from aivitals.store.rows import to_nusd
from aivitals.store.schema import GRANULARITIES, ROLLUP_KEYS
from aivitals.store.sketch import Sketch, group_blobs, merge_many

RollupKey = tuple[Any, ...]
"""(granularity, bucket_start, provider, model, operation, feature, team, environment,
prompt_version, status, error_type)"""

SUM_FIELDS = (
    "calls",
    "errors",
    "cancelled",
    "unpriced",
    "cost_nusd",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cache_hits",
    "cache_lookups",
    "latency_sum_ms",
    "ttft_count",
    "ttft_sum_ms",
    "speed_count",
    "speed_sum",
)
SKETCH_FIELDS = ("latency_sketch", "ttft_sketch")
FLOAT_FIELDS = ("latency_sum_ms", "ttft_sum_ms", "speed_sum")
INT_FIELDS = tuple(name for name in SUM_FIELDS if name not in FLOAT_FIELDS)
"""The sums that must fit a signed 64-bit column (the database adds the floats as they come)."""
_FLOAT_FIELDS = FLOAT_FIELDS

logger = logging.getLogger("aivitals.store")


def key_values(call: Call) -> tuple[str, ...]:
    """The rollup dimensions of a call, in `ROLLUP_KEYS` order ('' for absent)."""
    return (
        call.provider,
        call.model,
        call.operation,
        call.feature or "",
        call.team or "",
        call.environment or "",
        call.prompt_version or "",
        call.status,
        call.error_type or "",
    )


def rollup_key(row: dict[str, Any]) -> RollupKey:
    return (row["granularity"], row["bucket_start"], *(row[name] for name in ROLLUP_KEYS))


Figures = tuple[tuple[int, ...], float, float | None, float | None, int]
"""A call's share of every rollup row it folds into: its counts (in `COUNTED` order), latency,
TTFT, speed (None past the bound) and start in whole epoch seconds."""


def call_figures(
    calls: Sequence[Call], costs_nusd: Sequence[int | None] | None = None
) -> list[Figures | None]:
    """Each call's `Figures`, or None for a call with a value out of range (left out of every
    rollup). The writer computes them once a batch for the three rollup kinds, which each
    computed them again (a third of their Python)."""
    figures: list[Figures | None] = []
    most_speed = bounds.MAX_TOKENS_PER_SECOND
    for index, call in enumerate(calls):
        if not foldable(call):
            figures.append(None)
            continue
        cost = call.cost_usd
        if costs_nusd is not None:
            nusd = costs_nusd[index] or 0
        else:
            nusd = to_nusd(cost) or 0 if cost is not None else 0
        status, cache = call.status, call.cache
        speed = call.output_tokens_per_second
        # Speeds past the bound come from a generation time too short to measure (1e-300 ms
        # would be infinitely fast): left out, as the raw query leaves them out.
        if speed is not None and not speed <= most_speed:
            speed = None
        # Integers, not booleans: a row of one call writes these as they are, and PostgreSQL
        # takes no boolean for a BIGINT.
        counts = (
            1 if status == "error" else 0,
            1 if status == "cancelled" else 0,
            1 if cost is None else 0,
            nusd,
            call.input_tokens,
            call.output_tokens,
            call.cached_input_tokens,
            call.cache_write_tokens,
            call.reasoning_tokens,
            1 if cache == "hit" else 0,
            1 if cache in {"hit", "miss"} else 0,
        )
        seconds = int(call.started_at.timestamp() * 1000) // 1000
        figures.append((counts, call.latency_ms, call.ttft_ms, speed, seconds))
    return figures


def rollup_rows(
    calls: Iterable[Call],
    granularities: Sequence[int] = GRANULARITIES,
    *,
    costs_nusd: Sequence[int | None] | None = None,
    figures: Sequence[Figures | None] | None = None,
) -> list[dict[str, Any]]:
    """One row per (granularity, bucket, key) with the batch's sums and sketches.

    Calls with a value out of range are left out (and logged): see the module's docstring.
    ``costs_nusd``, when given, is ``to_nusd(call.cost_usd)`` of each of ``calls`` in order
    (the writer has them already); ``figures``, `call_figures` of ``calls`` likewise.
    """
    # One pass over the calls, each call's figures read once and added into its finest bucket;
    # a coarser bucket of the same calls as one finer bucket copies that row (`buckets`). The
    # writer folds every call it stores, and a pass per sum and granularity was a third of a
    # store write. Float sums are summed at the end over the members' values in call order, as
    # ``sum`` over the members always did, so they come out to the bit.
    batch = calls if isinstance(calls, Sequence) else list(calls)
    if figures is None:
        figures = call_figures(batch, costs_nusd)
    dimensions: list[tuple[str, ...] | None] = []
    seconds: list[int] = []
    refused = 0
    for call, figure in zip(batch, figures, strict=True):
        if figure is None:
            refused += 1
            dimensions.append(None)
            seconds.append(0)
        else:
            dimensions.append(key_values(call))
            seconds.append(figure[4])
    members, same = grouped(dimensions, seconds, granularities)
    groups = [Group.of(indices, figures) for indices in members.values()]
    if refused:
        logger.warning(
            "rollups: %d calls with a value out of range were left out of the rollups", refused
        )
    rows = [group.row(key) for key, group in zip(members, groups, strict=True)]
    _add_sketches(rows, groups)
    rows = with_copies(members, rows, same)
    fitting = [row for row in rows if _fits(row)]
    if len(fitting) < len(rows):
        logger.error(
            "rollups: %d buckets would outgrow their 64-bit sums and were left out",
            len(rows) - len(fitting),
        )
    return fitting


COUNTED = (
    "errors",
    "cancelled",
    "unpriced",
    "cost_nusd",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cache_hits",
    "cache_lookups",
)


class Group:
    """The members of one rollup row being folded: each one's counts and floats, in call order."""

    __slots__ = ("counts", "latencies", "speeds", "ttfts")

    def __init__(self) -> None:
        self.counts: list[tuple[int, ...]] = []
        self.latencies: list[float] = []
        self.ttfts: list[float] = []
        self.speeds: list[float] = []

    @classmethod
    def of(cls, indices: list[int], figures: Sequence[Figures | None]) -> Group:
        """The group of the calls at ``indices`` (in call order; each with its figures)."""
        group = cls()
        counts, latencies, ttfts, speeds = group.counts, group.latencies, group.ttfts, group.speeds
        for index in indices:
            count, latency, ttft, speed, _ = cast(Figures, figures[index])
            counts.append(count)
            latencies.append(latency)
            if ttft is not None:
                ttfts.append(ttft)
            if speed is not None:
                speeds.append(speed)
        return group

    def row(self, key: RollupKey) -> dict[str, Any]:
        row: dict[str, Any] = {"granularity": key[0], "bucket_start": key[1]}
        row.update(zip(ROLLUP_KEYS, key[2:], strict=True))
        latencies, ttfts, speeds = self.latencies, self.ttfts, self.speeds
        row["calls"] = len(latencies)
        # Whole numbers: their sums do not depend on the order they are added in.
        row.update(zip(COUNTED, map(sum, zip(*self.counts, strict=True)), strict=True))
        row.update(
            latency_sum_ms=sum(latencies),
            ttft_count=len(ttfts),
            ttft_sum_ms=sum(ttfts),
            speed_count=len(speeds),
            speed_sum=sum(speeds),
        )
        return row


def _add_sketches(rows: list[dict[str, Any]], groups: list[Group]) -> None:
    """Each row's latency and TTFT sketches, built for all the rows at once (`group_blobs`:
    a `Sketch.of` per row, two a row, was a tenth of the fold of a batch)."""
    if not rows:
        return
    for name, members in (
        ("latency_sketch", [group.latencies for group in groups]),
        ("ttft_sketch", [group.ttfts for group in groups]),
    ):
        sizes = np.fromiter(map(len, members), np.int64, len(members))
        values = np.fromiter(chain.from_iterable(members), np.float64, int(sizes.sum()))
        blobs = group_blobs(values, np.cumsum(sizes) - sizes)
        for row, blob in zip(rows, blobs, strict=True):
            row[name] = blob


def foldable(call: Call) -> bool:
    """Whether every value of ``call`` a rollup sums or sketches is in range."""
    # One expression, as `Call` validates: this runs for every call the store writes.
    most_ms, most_tokens = bounds.MAX_DURATION_MS, bounds.MAX_TOKENS
    ttft, cost = call.ttft_ms, call.cost_usd
    return (
        0 <= call.latency_ms <= most_ms  # NaN compares False
        and (ttft is None or 0 <= ttft <= most_ms)
        and 0 <= call.input_tokens <= most_tokens
        and 0 <= call.output_tokens <= most_tokens
        and 0 <= call.cached_input_tokens <= most_tokens
        and 0 <= call.cache_write_tokens <= most_tokens
        and 0 <= call.reasoning_tokens <= most_tokens
        and (cost is None or bounds.usd_ok(cost))
    )


def _fits(row: dict[str, Any]) -> bool:
    return all(row[name] <= bounds.INT64_MAX for name in SUM_FIELDS if name not in _FLOAT_FIELDS)


def merge_rows(stored: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """A stored rollup row with a new batch's row for the same key added in.

    When a sum would outgrow its 64-bit column the stored row is kept as it was (logged).
    """
    merged = dict(stored)
    for name in SUM_FIELDS:
        merged[name] = stored[name] + new[name]
    if not _fits(merged):
        logger.error(
            "rollups: the bucket at %s would outgrow its 64-bit sums; %d calls left out of it",
            stored["bucket_start"],
            new["calls"],
        )
        return dict(stored)
    for name in SKETCH_FIELDS:
        sketch = Sketch.from_bytes(stored[name])
        sketch.merge(Sketch.from_bytes(new[name]))
        merged[name] = sketch.to_bytes()
    return merged


def added(stored: dict[str, Any], new: dict[str, Any]) -> dict[str, Any] | None:
    """What to upsert for ``new`` when its key is stored, the database adding the sums:
    ``new`` with the sketches merged; None (logged) when the integer sums would outgrow their
    64-bit columns, the stored row then kept as it was.

    ``stored`` needs only the integer sums and the sketches (`aivitals.store.rollup_upsert`).
    """
    return added_rows([stored], [new])[0]


def added_rows(
    stored: Sequence[dict[str, Any]], new: Sequence[dict[str, Any]]
) -> list[dict[str, Any] | None]:
    """`added` of each pair, the sketches of every row that fits merged in one numpy pass
    (`sketch.merge_many`: a `Sketch` per blob was most of a fold with many users a batch)."""
    kept = [i for i, (old, row) in enumerate(zip(stored, new, strict=True)) if _sums_fit(old, row)]
    rows = [dict(new[i]) for i in kept]
    for name in SKETCH_FIELDS:
        blobs = merge_many([stored[i][name] for i in kept], [row[name] for row in rows])
        for row, blob in zip(rows, blobs, strict=True):
            row[name] = blob
    merged: list[dict[str, Any] | None] = [None] * len(new)
    for i, row in zip(kept, rows, strict=True):
        merged[i] = row
    return merged


def _sums_fit(stored: dict[str, Any], new: dict[str, Any]) -> bool:
    for name in INT_FIELDS:
        if stored[name] + new[name] > bounds.INT64_MAX:
            logger.error(
                "rollups: the bucket at %s would outgrow its 64-bit sums; %d calls left out of it",
                stored["bucket_start"],
                new["calls"],
            )
            return False
    return True
