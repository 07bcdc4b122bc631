"""What the response cache saved and what the guardrails did, over a window: `CacheImpact`.

Every call of the window falls in one *level*: ``exact`` (a hit of the exact cache),
``semantic`` (a hit of the semantic cache), ``miss`` (looked in the cache, went upstream) or
``uncached`` (never looked: no cache configured, ``X-Aivitals-Cache: off``, or a call recorded
outside the gateway). Per level: the calls and their share of all calls, the spend, the spend
avoided (the sum of ``saved_usd``: what the replayed answers cost when first bought), the mean
latency, and for hits and misses the latency's p50 and p95 (nearest rank, exact:
`aivitals.percentile`), read only when the window has hits.

The upstream time a hit avoided is not stored: it is *estimated* here, as the contract of issue
18 says, as the mean latency of the successful misses of the same model in the same window (a
failed miss, a fast 429 or a 30 s timeout, says nothing of how long an answer takes). Hits of a
model with no successful miss in the window have no estimate; ``unestimated_hits`` counts them.

Guardrail actions come from the ``guardrail`` tag (``name:action`` pairs, comma-joined), counted
per guardrail and action; ``content_filter_blocks`` counts the calls recorded with
``error_type=content_filter``.

The cache's columns are no rollup dimension, so this reads raw calls: SQL sums per level and
model, and the latencies themselves for the percentiles.

>>> import sqlalchemy as sa
>>> from datetime import UTC, datetime
>>> from aivitals.store.schema import metadata
>>> from aivitals.query.window import parse_since
>>> engine = sa.create_engine("sqlite://")
>>> metadata.create_all(engine)
>>> window = parse_since("24h", now=datetime(2026, 11, 3, tzinfo=UTC))
>>> with engine.connect() as connection:
...     found = cache_impact(connection, window, Filters())
>>> [level.level for level in found.levels], found.hits
(['exact', 'semantic', 'miss', 'uncached'], 0)
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

import numpy as np
import sqlalchemy as sa

from aivitals.query.collect import collect
from aivitals.query.distribution import exact_quantiles
from aivitals.query.filters import Filters, call_conditions
from aivitals.query.measures import usd
from aivitals.query.sums import (
    RAW_SUMS,
    fast_columns,
    join_safe,
    overflowed,
    safe_columns,
    usable_call,
)
from aivitals.query.window import Window
from aivitals.store.schema import calls

Level = Literal["exact", "semantic", "miss", "uncached"]
LEVELS: tuple[Level, ...] = ("exact", "semantic", "miss", "uncached")
HIT_LEVELS: tuple[Level, ...] = ("exact", "semantic")
GUARDRAIL_TAG = "guardrail"
TIME_AVOIDED_METHOD = (
    "estimated: each hit times the mean latency of the successful cache misses of the same "
    "model in the window"
)
_SUMS = ("calls", "unpriced", "cost_nusd", "latency_sum_ms")
# How a stored row's tags begin the guardrail tag: a cheap filter before the JSON is parsed.
# The writer's JSON has no spaces after its separators (store.rows).
_TAG_PATTERN = f'%"{GUARDRAIL_TAG}":%'


@dataclass(frozen=True, slots=True, kw_only=True)
class LevelImpact:
    """The calls of one cache level."""

    level: Level
    calls: int = 0
    share: float | None = None
    """Of all the window's calls (None when it has none)."""
    cost_usd: Decimal = Decimal(0)
    """Spend of the priced calls (a hit costs nothing)."""
    unpriced_calls: int = 0
    saved_usd: Decimal = Decimal(0)
    """Spend avoided: the sum of the hits' ``saved_usd``."""
    time_avoided_ms: float | None = None
    """Upstream time avoided, estimated (see the module); None for a level of no hits."""
    unestimated_hits: int = 0
    """Hits of a model with no successful miss in the window: left out of ``time_avoided_ms``."""
    latency_avg_ms: float | None = None
    latency_p50_ms: float | None = None
    """Hits and misses only, when the window has hits; None for ``uncached`` (see `_hit_and_miss_values`)."""
    latency_p95_ms: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class GuardrailCount:
    """How many calls one guardrail acted on with one action."""

    guardrail: str
    action: str
    calls: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheImpact:
    """The window's calls per cache level, what the hits avoided, and the guardrails' actions."""

    calls: int = 0
    hits: int = 0
    hit_ratio: float | None = None
    """Hits (both levels) over all calls that looked in the cache (hits and misses)."""
    saved_usd: Decimal = Decimal(0)
    time_avoided_ms: float = 0.0
    time_avoided_method: str = TIME_AVOIDED_METHOD
    levels: list[LevelImpact] = field(default_factory=list)
    """One per `LEVELS`, in that order."""
    guardrails: list[GuardrailCount] = field(default_factory=list)
    """Most calls first, then by guardrail and action."""
    guarded_calls: int = 0
    """Calls on which at least one guardrail acted."""
    content_filter_blocks: int = 0
    skipped_rows: int = 0
    """Stored rows left out: a value out of range, or a guardrail tag that is not JSON."""


def level_index() -> sa.ColumnElement[int]:
    """A call's cache level in SQL, as its index in `LEVELS`; `_level` is the same in Python."""
    c = calls.c
    return sa.case(
        (sa.and_(c.cache == "hit", c.cache_level == "semantic"), LEVELS.index("semantic")),
        (c.cache == "hit", LEVELS.index("exact")),
        (c.cache == "miss", LEVELS.index("miss")),
        else_=LEVELS.index("uncached"),
    )


def _level(cache: str | None, cache_level: str | None) -> Level:
    if cache == "hit":
        return "semantic" if cache_level == "semantic" else "exact"
    return "miss" if cache == "miss" else "uncached"


def cache_impact(connection: sa.Connection, window: Window, filters: Filters) -> CacheImpact:
    """The window's `CacheImpact` for the calls that match ``filters``."""
    where = [
        calls.c.started_ms >= window.start_ms,
        calls.c.started_ms < window.end_ms,
        *call_conditions(filters),
    ]
    usable = usable_call(_SUMS)
    # Grouped by the plain columns, the level worked out in Python: PostgreSQL would not match
    # a CASE of bound parameters in GROUP BY with the same CASE in the select list.
    keys = [calls.c.cache, calls.c.cache_level, calls.c.model, calls.c.status, calls.c.error_type]
    uncached = _all_uncached(connection, window, filters)
    skipped, sums, blocks = uncached or _sums(connection, keys, where, usable)
    mean_miss = _mean_ok_miss_latency(sums)
    total = sum(values["calls"] for values in sums.values())
    any_hit = any(key[0] in HIT_LEVELS for key in sums)
    # A window without hits (a store of SDK calls, a gateway without a cache) has nothing to
    # set side by side: the reads that only hits need are skipped.
    latency_levels, latencies, saved = (
        _hit_and_miss_values(connection, where, usable)
        if any_hit
        else (np.zeros(0, np.int64), np.zeros(0), {})
    )
    quantiles = exact_quantiles(latency_levels, latencies, len(LEVELS), (0.5, 0.95))
    found: list[LevelImpact] = []
    for index, name in enumerate(LEVELS):
        rows = {key: values for key, values in sums.items() if key[0] == name}
        n = sum(values["calls"] for values in rows.values())
        avoided, unestimated = None, 0
        if name in HIT_LEVELS and n:
            avoided = 0.0
            for (_, model, _), values in rows.items():
                mean = mean_miss.get(model)
                if mean is None:
                    unestimated += values["calls"]
                else:
                    avoided += values["calls"] * mean
        latency_sum = sum(values["latency_sum_ms"] for values in rows.values())
        p50, p95 = (None if np.isnan(v) else float(v) for v in quantiles[index])
        found.append(
            LevelImpact(
                level=name,
                calls=n,
                share=n / total if total else None,
                cost_usd=usd(sum(values["cost_nusd"] for values in rows.values())),
                unpriced_calls=sum(values["unpriced"] for values in rows.values()),
                saved_usd=saved.get(name, Decimal(0)),
                time_avoided_ms=avoided,
                unestimated_hits=unestimated,
                latency_avg_ms=latency_sum / n if n else None,
                latency_p50_ms=p50,
                latency_p95_ms=p95,
            )
        )
    hits = sum(level.calls for level in found if level.level in HIT_LEVELS)
    looked = hits + found[LEVELS.index("miss")].calls
    actions, guarded, unreadable = _guardrails(connection, where)
    return CacheImpact(
        calls=total,
        hits=hits,
        hit_ratio=hits / looked if looked else None,
        saved_usd=sum((level.saved_usd for level in found), Decimal(0)),
        time_avoided_ms=sum(level.time_avoided_ms or 0.0 for level in found),
        levels=found,
        guardrails=actions,
        guarded_calls=guarded,
        content_filter_blocks=blocks,
        skipped_rows=skipped + unreadable,
    )


SumKey = tuple[Level, str, bool]
"""(level, model, succeeded)."""


def _sums(
    connection: sa.Connection,
    keys: Sequence[sa.ColumnElement[Any]],
    where: list[sa.ColumnElement[bool]],
    usable: sa.ColumnElement[bool],
) -> tuple[int, dict[SumKey, dict[str, Any]], int]:
    """The rows skipped, `_SUMS` per key over usable rows, as `collect` sums (its fast form,
    and its safe form when a row is out of range or a sum overflows), and the calls blocked."""
    unusable = sa.func.sum(sa.case((usable, 0), else_=1))
    query = sa.select(*keys, unusable, *fast_columns(RAW_SUMS, _SUMS)).where(*where)
    k = len(keys)
    try:
        rows = connection.execute(query.group_by(*keys)).all()
    except sa.exc.DBAPIError as exc:
        if not overflowed(exc):
            raise
        connection.rollback()  # PostgreSQL refuses every statement of a failed transaction
        rows = None
    skipped = 0
    found: dict[tuple[Any, ...], dict[str, Any]] = {}
    if rows is not None and not any(row[k] for row in rows):
        for row in rows:
            found[tuple(row[:k])] = dict(zip(_SUMS, row[k + 1 :], strict=True))
    else:
        safe = sa.select(*keys, *safe_columns(RAW_SUMS, _SUMS, usable)).where(*where)
        for row in connection.execute(safe.group_by(*keys)):
            dropped, values = join_safe(RAW_SUMS, _SUMS, row[k:])
            skipped += dropped
            if values[0]:
                found[tuple(row[:k])] = dict(zip(_SUMS, values, strict=True))
    # Several (cache, cache_level, status) rows make one (level, model, succeeded) key.
    merged: dict[SumKey, dict[str, Any]] = {}
    blocks = 0
    for (cache, cache_level, model, status, error_type), summed in found.items():
        if error_type == "content_filter":
            blocks += int(summed["calls"])
        into = merged.setdefault(
            (_level(cache, cache_level), str(model), status == "ok"),
            {name: 0.0 if name == "latency_sum_ms" else 0 for name in _SUMS},
        )
        for name in _SUMS:
            into[name] += float(summed[name]) if name == "latency_sum_ms" else int(summed[name])
    return skipped, merged, blocks


def _all_uncached(
    connection: sa.Connection, window: Window, filters: Filters
) -> tuple[int, dict[SumKey, dict[str, Any]], int] | None:
    """`_sums`' answer from the rollups when no call of the window looked in the cache (a store
    of SDK calls, a gateway without one), as most are: every call is then ``uncached``, and the
    rollups answer in milliseconds what the raw scan takes a second over (200,000 calls).
    None when some call looked."""
    totals = collect(
        connection,
        (window.start_ms, window.end_ms),
        filters,
        ("model", "status", "error_type"),
        percentiles=False,
        sums=(*_SUMS, "cache_lookups"),
    )
    if int(totals.ints["cache_lookups"].sum()):
        return None
    sums: dict[SumKey, dict[str, Any]] = {}
    blocks = 0
    for gid, (_, model, status, error_type) in enumerate(totals.keys):
        n = int(totals.ints["calls"][gid])
        if not n:
            continue
        if error_type == "content_filter":
            blocks += n
        into = sums.setdefault(
            ("uncached", str(model), status == "ok"),
            {name: 0.0 if name == "latency_sum_ms" else 0 for name in _SUMS},
        )
        into["calls"] += n
        into["unpriced"] += int(totals.ints["unpriced"][gid])
        into["cost_nusd"] += int(totals.ints["cost_nusd"][gid])
        into["latency_sum_ms"] += float(totals.floats["latency_sum_ms"][gid])
    return int(totals.ints["skipped_rows"].sum()), sums, blocks


def _mean_ok_miss_latency(sums: dict[SumKey, dict[str, Any]]) -> dict[str, float]:
    """Per model, the mean latency of its successful misses."""
    found: dict[str, float] = {}
    for (level, model, ok), values in sums.items():
        if level == "miss" and ok and values["calls"]:
            found[model] = values["latency_sum_ms"] / values["calls"]
    return found


def _hit_and_miss_values(
    connection: sa.Connection,
    where: list[sa.ColumnElement[bool]],
    usable: sa.ColumnElement[bool],
) -> tuple[Any, Any, dict[Level, Decimal]]:
    """Each usable hit's and miss's level index and latency, for the exact percentiles, and the
    sum of the hits' ``saved_usd`` per level, exact (`Decimal`: the column holds decimal text).

    One read for both. Not the uncached calls': the summary has their latency, and they may be
    every call of the window, which read one by one is most of the work (200,000 calls: 0.7 s
    of 1.2 s).
    """
    looked = calls.c.cache.in_(("hit", "miss"))
    query = sa.select(level_index(), calls.c.latency_ms, calls.c.saved_usd).where(
        *where, looked, usable
    )
    rows = connection.execute(query).all()
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0), {}
    ids, values, texts = zip(*rows, strict=True)
    saved: dict[Level, Decimal] = {}
    # Many hits replay the same answer: each distinct (level, text) is read as money once.
    for (index, text), n in Counter(zip(ids, texts, strict=True)).items():
        level = LEVELS[index]
        value = _money(text) if level in HIT_LEVELS else None
        if value is not None:
            saved[level] = saved.get(level, Decimal(0)) + value * n
    return np.asarray(ids, np.int64), np.asarray(values, np.float64), saved


def _guardrails(
    connection: sa.Connection, where: list[sa.ColumnElement[bool]]
) -> tuple[list[GuardrailCount], int, int]:
    """Counts per (guardrail, action), the calls guarded, and the rows whose tags are not JSON."""
    query = (
        sa.select(calls.c.tags, sa.func.count())
        .where(*where, calls.c.tags.like(_TAG_PATTERN))
        .group_by(calls.c.tags)
    )
    counts: Counter[tuple[str, str]] = Counter()
    guarded = unreadable = 0
    for text, n in connection.execute(query):
        try:
            tags = json.loads(text)
        except ValueError:
            unreadable += int(n)
            continue
        value = tags.get(GUARDRAIL_TAG) if isinstance(tags, dict) else None
        pairs = parse_guardrail_tag(value) if isinstance(value, str) else []
        if pairs:
            guarded += int(n)
        for pair in pairs:
            counts[pair] += int(n)
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    actions = [GuardrailCount(guardrail=g, action=a, calls=n) for (g, a), n in ordered]
    return actions, guarded, unreadable


def parse_guardrail_tag(value: str) -> list[tuple[str, str]]:
    """The (guardrail, action) pairs of a ``guardrail`` tag; a pair without both is left out.

    >>> parse_guardrail_tag("card:redact,injection:flag")
    [('card', 'redact'), ('injection', 'flag')]
    """
    pairs: list[tuple[str, str]] = []
    for item in value.split(","):
        name, _, action = item.strip().rpartition(":")
        if name and action:
            pairs.append((name, action))
    return list(dict.fromkeys(pairs))


def _money(text: str | None) -> Decimal | None:
    """Stored decimal text as money; None for text that is not (written by another tool: the
    call still counts)."""
    if text is None:
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    return value if value.is_finite() else None
