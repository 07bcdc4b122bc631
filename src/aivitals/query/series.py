"""Figures over time (`timeseries`), the budget view (`spend`) and the biggest spenders (`top`).

A time series cuts the window at every UTC minute, hour or day; `spend` cuts it at local hours or
local midnights in a time zone, so a day in New York runs from 05:00 UTC in winter and 04:00 UTC
in summer. Every piece is answered by `collect`, so counts and sums are exact whatever the
edges, and rollup rows never straddle two buckets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Literal, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa

from aivitals.query.collect import collect
from aivitals.query.errors import AnswerTooLarge, QueryError
from aivitals.query.filters import Filters
from aivitals.query.measures import usd
from aivitals.query.window import Window
from aivitals.store.rows import epoch_ms

Step = Literal["minute", "hour", "day"]
STEPS: dict[str, int] = {"minute": 60, "hour": 3600, "day": 86400}
TOP_FIELDS = ("user", "feature", "team", "model")
MAX_BUCKETS = 21_600
"""The most buckets one time series (or spend view) may cut its window into: 15 days of minutes,
900 days of hours, 59 years of days. Past it the answer is refused, not built (six years of
minutes once took 700 MB)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Point:
    """One bucket of a time series (for one group when grouped).

    ``start`` is the UTC start of the bucket; the first and last buckets hold only the part of
    them inside the window.
    """

    start: datetime
    group: dict[str, str | None] = field(default_factory=dict)
    calls: int
    errors: int
    cost_usd: Decimal
    unpriced_calls: int
    input_tokens: int
    output_tokens: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    skipped_rows: int = 0
    """Stored rows of this bucket left out because a value is out of range (`Measures`)."""


class SpendBucket(NamedTuple):
    """Spend in one local hour or day; ``start`` is in the requested time zone."""

    start: datetime
    cost_usd: Decimal
    skipped_rows: int = 0
    """Stored rows of this bucket left out because a value is out of range (`Measures`)."""


class TopItem(NamedTuple):
    """One value of the ``top`` field (None: calls without one) with its spend and calls."""

    value: str | None
    cost_usd: Decimal
    calls: int


def timeseries(
    connection: sa.Connection, window: Window, filters: Filters, step: str, by: str | None
) -> list[Point]:
    """Points for the buckets (and groups) that have calls, oldest first."""
    seconds = _step(step, STEPS)
    fields = (by,) if by else ()
    step_ms = seconds * 1000
    first = window.start_ms // step_ms * step_ms
    _check_buckets(-(-(window.end_ms - first) // step_ms), step, STEPS)
    edges = [window.start_ms, *range(first + step_ms, window.end_ms, step_ms), window.end_ms]
    totals = collect(connection, edges, filters, fields, coarsest=seconds, ttft=False)
    points = []
    for gid, key in enumerate(totals.keys):
        latency = [None if math.isnan(v) else float(v) for v in totals.latency[gid]]
        points.append(
            Point(
                start=datetime.fromtimestamp(edges[key[0]] // step_ms * seconds, UTC),
                group=dict(zip(fields, key[1:], strict=True)),
                calls=int(totals.ints["calls"][gid]),
                errors=int(totals.ints["errors"][gid]),
                cost_usd=usd(int(totals.ints["cost_nusd"][gid])),
                unpriced_calls=int(totals.ints["unpriced"][gid]),
                input_tokens=int(totals.ints["input_tokens"][gid]),
                output_tokens=int(totals.ints["output_tokens"][gid]),
                latency_p50_ms=latency[0],
                latency_p95_ms=latency[1],
                latency_p99_ms=latency[2],
                skipped_rows=int(totals.ints["skipped_rows"][gid]),
            )
        )
    points.sort(key=lambda p: (p.start, tuple((v is None, v or "") for v in p.group.values())))
    return points


def spend(
    connection: sa.Connection, window: Window, filters: Filters, step: str, tz: str
) -> list[SpendBucket]:
    """Spend per local hour or day of ``tz``, every bucket of the window, oldest first."""
    seconds = _step(step, {"hour": 3600, "day": 86400})
    zone = _zone(tz)
    if window.start == window.end:
        return []
    # Local days last 23 to 25 hours: two more buckets at most than in UTC.
    _check_buckets((window.end_ms - window.start_ms) // (seconds * 1000) - 2, step, STEPS)
    starts = local_starts(window, seconds, zone)
    edges = [window.start_ms, *(epoch_ms(s) for s in starts[1:]), window.end_ms]
    totals = collect(
        connection, edges, filters, coarsest=seconds, percentiles=False, sums=("cost_nusd",)
    )
    cost = [0] * len(starts)
    skipped = [0] * len(starts)
    for gid, key in enumerate(totals.keys):
        cost[key[0]] += int(totals.ints["cost_nusd"][gid])
        skipped[key[0]] += int(totals.ints["skipped_rows"][gid])
    return [
        SpendBucket(start, usd(nusd), rows)
        for start, nusd, rows in zip(starts, cost, skipped, strict=True)
    ]


def top(
    connection: sa.Connection, window: Window, filters: Filters, by: str, limit: int
) -> list[TopItem]:
    """The ``limit`` values of ``by`` that spent most, with their calls; ties by calls, then value."""
    if by not in TOP_FIELDS:
        raise QueryError(
            "by", f"cannot rank the top spenders by {by!r}; use one of {', '.join(TOP_FIELDS)}"
        )
    if limit < 1:
        raise QueryError("limit", f"the top spenders' limit must be 1 or more, got {limit}")
    totals = collect(
        connection,
        (window.start_ms, window.end_ms),
        filters,
        (by,),
        percentiles=False,
        sums=("cost_nusd",),
    )
    items = [
        TopItem(key[1], usd(int(totals.ints["cost_nusd"][gid])), int(totals.ints["calls"][gid]))
        for gid, key in enumerate(totals.keys)
        if totals.ints["calls"][gid]  # a value held only by rows skipped as out of range
    ]
    items.sort(key=lambda item: (-item.cost_usd, -item.calls, item.value is None, item.value or ""))
    return items[:limit]


def local_starts(window: Window, seconds: int, zone: ZoneInfo) -> list[datetime]:
    """Starts of the local hours or days (``seconds`` 3600 or 86400) that meet the window.

    The first start is at or before the window's start. Days begin at local midnight, so they
    last 23 or 25 hours when the clocks change.
    """
    starts = [_floor_local(window.start, seconds, zone)]
    while True:
        last = starts[-1]
        if seconds == 86400:
            following = datetime.combine(last.date() + timedelta(days=1), time(), zone)
        else:
            following = _floor_local(last.astimezone(UTC) + timedelta(hours=1), seconds, zone)
        if following.astimezone(UTC) <= last.astimezone(UTC):
            following = (last.astimezone(UTC) + timedelta(seconds=seconds)).astimezone(zone)
        if following.astimezone(UTC) >= window.end:
            return starts
        starts.append(following)


def _floor_local(moment: datetime, seconds: int, zone: ZoneInfo) -> datetime:
    local = moment.astimezone(zone)
    if seconds == 86400:
        return datetime.combine(local.date(), time(), zone)
    return local.replace(minute=0, second=0, microsecond=0)


def _check_buckets(count: int, step: str, steps: dict[str, int]) -> None:
    if count <= MAX_BUCKETS:
        return
    larger = [name for name, seconds in steps.items() if seconds > steps[step]]
    advice = (
        f"a larger step ({' or '.join(larger)}) or a shorter window"
        if larger
        else ("a shorter window")
    )
    raise AnswerTooLarge(
        "step",
        f"this window by {step} makes {count:,} buckets, over the limit of "
        f"{MAX_BUCKETS:,} a request; use {advice} (since)",
    )


def _step(step: str, allowed: dict[str, int]) -> int:
    if step not in allowed:
        raise QueryError("step", f"cannot read {step!r}; use {' or '.join(allowed)}")
    return allowed[step]


def _zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise QueryError(
            "tz", f"unknown time zone {tz!r}; use an IANA name like America/New_York or UTC"
        ) from None
