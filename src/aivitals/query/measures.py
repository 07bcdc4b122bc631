"""The figures every aggregate query reports for a set of calls: `Measures`.

They are derived from sums (`collect.Totals`), so the same code serves a whole window, one group
of a breakdown, and one bucket of a time series. Money is `Decimal`: totals are exact sums of the
stored nano-dollars; averages are rounded half-even to the nano-dollar.

>>> usd(1_234_567_890)
Decimal('1.234567890')
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from aivitals.query.collect import Method, Totals


@dataclass(frozen=True, slots=True, kw_only=True)
class Measures:
    """Counts, spend, tokens, latency, speed, cache and quality of a set of calls.

    Ratios, averages and percentiles are None when no call contributes to them.
    Percentiles are nearest-rank (`aivitals.percentile`): p99 is the smallest latency that 99%
    of the calls took no longer than, so with fewer than 100 calls it is the slowest one.
    ``percentiles`` says how the percentiles and the maximum were found: ``"exact"`` from every
    raw latency, or ``"sketch"`` from merged rollup sketches, within 1% of the exact value.
    """

    calls: int = 0
    ok: int = 0
    errors: int = 0
    cancelled: int = 0
    success_rate: float | None = None
    """Share of calls with status ``ok``."""
    total_cost_usd: Decimal = Decimal(0)
    """Spend of the priced calls; unpriced calls are counted in ``unpriced_calls`` instead."""
    avg_cost_usd: Decimal | None = None
    """Average spend per priced call."""
    cost_per_1k_tokens: Decimal | None = None
    """Spend per 1,000 input plus output tokens of every call (None if no call is priced)."""
    unpriced_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    latency_avg_ms: float | None = None
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    latency_p99_ms: float | None = None
    latency_max_ms: float | None = None
    """The slowest call (within 1% when read from sketches, like the percentiles)."""
    ttft_avg_ms: float | None = None
    ttft_p50_ms: float | None = None
    ttft_p95_ms: float | None = None
    tokens_per_second: float | None = None
    """Mean output tokens per second over the successful calls that produced output."""
    cache_hit_ratio: float | None = None
    """Hits over hits plus misses, among calls that looked in a response cache."""
    quality: dict[str, float] = field(default_factory=dict)
    """Mean score value by score name, over the scores of these calls, whenever they arrived."""
    percentiles: Method = "exact"
    skipped_rows: int = 0
    """Stored rows left out because a value in them is out of range (written by an older
    version or another tool): raw calls, and rollup rows (one per key and minute, hour or day).
    A rollup row whose sketch alone is out of range keeps its counts and sums and is left out of
    the percentiles only. See docs/queries.md."""


def usd(nusd: int) -> Decimal:
    """Nano-dollars as dollars, exactly."""
    return Decimal(nusd).scaleb(-9)


def _per(nusd: int, count: int) -> Decimal:
    return (Decimal(nusd) / count).quantize(Decimal(1), rounding=ROUND_HALF_EVEN).scaleb(-9)


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def _value(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def measures_of(
    totals: Totals, gid: int | None, quality: dict[str, float] | None = None
) -> dict[str, Any]:
    """Keyword arguments for a `Measures` (or subclass) of group ``gid`` (None: no calls)."""
    if gid is None:
        return {"quality": quality or {}, "percentiles": totals.method}
    i = {name: int(values[gid]) for name, values in totals.ints.items()}
    f = {name: float(values[gid]) for name, values in totals.floats.items()}
    calls = i["calls"]
    ok = calls - i["errors"] - i["cancelled"]
    priced = calls - i["unpriced"]
    tokens = i["input_tokens"] + i["output_tokens"]
    latency = totals.latency[gid]
    ttft = totals.ttft[gid]
    return {
        "calls": calls,
        "ok": ok,
        "errors": i["errors"],
        "cancelled": i["cancelled"],
        "success_rate": _ratio(ok, calls),
        "total_cost_usd": usd(i["cost_nusd"]),
        "avg_cost_usd": _per(i["cost_nusd"], priced) if priced else None,
        "cost_per_1k_tokens": _per(i["cost_nusd"] * 1000, tokens) if priced and tokens else None,
        "unpriced_calls": i["unpriced"],
        "input_tokens": i["input_tokens"],
        "output_tokens": i["output_tokens"],
        "cached_input_tokens": i["cached_input_tokens"],
        "cache_write_tokens": i["cache_write_tokens"],
        "reasoning_tokens": i["reasoning_tokens"],
        "latency_avg_ms": _ratio(f["latency_sum_ms"], calls),
        "latency_p50_ms": _value(latency[0]),
        "latency_p95_ms": _value(latency[1]),
        "latency_p99_ms": _value(latency[2]),
        "latency_max_ms": _value(latency[3]),
        "ttft_avg_ms": _ratio(f["ttft_sum_ms"], i["ttft_count"]),
        "ttft_p50_ms": _value(ttft[0]),
        "ttft_p95_ms": _value(ttft[1]),
        "tokens_per_second": _ratio(f["speed_sum"], i["speed_count"]),
        "cache_hit_ratio": _ratio(i["cache_hits"], i["cache_lookups"]),
        "quality": quality or {},
        "percentiles": totals.method,
        "skipped_rows": i["skipped_rows"],
    }
