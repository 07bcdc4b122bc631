"""Quality: the mean of each score, over the scores of the calls a query selects, and the
evaluators' rates (refusal, empty, truncated, invalid JSON, PII leak) those means are.

A score may arrive hours after its call; it counts with its call, so a window's quality is the
scores of the calls that started in the window, whenever the scores were created.

Whole minutes, hours and days are read from ``score_rollups`` (`aivitals.store.score_rollup`:
the scores folded by their call's start and rollup key) when every filter and group is a rollup
dimension, as `aivitals.query.plan` does for calls; whole hours and days from
``user_score_rollups`` (`aivitals.store.user_score_rollup`) when ``user`` is a filter or group
and the others are provider or model. The ragged ends of the window, and every other question
about users, tiers or quantisation, join the raw scores to their calls as follows.

Scores are joined to calls, so the cost follows whichever side is smaller. When the window holds
few calls, the join walks them by ``calls.started_ms`` and finds their scores by
``scores.call_id``; when it holds many more calls than there are scores (a month of history with
a few percent of calls scored), it walks the scores and finds each call by id. Probing the calls
is about six times dearer per row than walking them (measured on SQLite), hence `CALLS_PER_SCORE`.

Walking many scores (hundreds of thousands) is split by ranges of ``call_id`` across threads, each
with a connection of its own: SQLite releases the GIL while it works, so two cores nearly halve
the time. Those connections may see a batch committed after the main one began; quality can then
include a score that arrived a moment later than the rest of the answer.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from aivitals.query.filters import Filters, call_conditions, needs_calls, user_rolled
from aivitals.query.plan import cover
from aivitals.query.window import Window
from aivitals.store.bounds import MAX_SCORE_MAGNITUDE
from aivitals.store.schema import (
    USER_GRANULARITIES,
    calls,
    score_rollups,
    scores,
    user_score_rollups,
)

CALLS_PER_SCORE = 6
"""Walk the scores when the window holds more than this many calls per stored score."""
PARALLEL_SCORES = 20_000
"""Walk the scores in several threads when there are at least this many."""
MAX_THREADS = 4


ScoreSums = dict[tuple[str | None, ...], dict[str, tuple[float, int]]]
"""Per group of ``by`` values (absent values are None): score name to (sum of values, count)."""


def score_sums(
    connection: sa.Connection,
    window: Window,
    filters: Filters,
    by: Sequence[str] = (),
    *,
    calls_in_window: int | None = None,
    skipped: dict[tuple[str | None, ...], int] | None = None,
) -> ScoreSums:
    """The sum and count of each score's values, per group, over the scores of the window's calls.

    Whole minutes, hours and days of the window are read from ``score_rollups`` when the filters
    and groups are rollup dimensions (`plan.cover`), the rest from the scores joined to their
    calls. ``calls_in_window``, when known, lets a join over the whole window start from the
    scores if that is cheaper. Scores whose value is out of range (`aivitals.store.bounds`) are
    left out, and counted per group into ``skipped`` when it is given.
    """
    rows: list[tuple[Any, ...]] = []
    if user_rolled(filters, by):
        plan = cover([window.start_ms, window.end_ms], granularities=USER_GRANULARITIES)
        for start_ms, end_ms in plan.raw:
            rows.extend(_raw_rows(connection, start_ms, end_ms, filters, by, calls_in_window=None))
        if plan.rolled:
            rows.extend(_rolled_rows(connection, plan.rolled, filters, by, user_score_rollups))
    elif needs_calls(filters, by):
        rows.extend(
            _raw_rows(
                connection,
                window.start_ms,
                window.end_ms,
                filters,
                by,
                calls_in_window=calls_in_window,
            )
        )
    else:
        plan = cover([window.start_ms, window.end_ms])
        for start_ms, end_ms in plan.raw:
            rows.extend(_raw_rows(connection, start_ms, end_ms, filters, by, calls_in_window=None))
        if plan.rolled:
            rows.extend(_rolled_rows(connection, plan.rolled, filters, by))
    sums: ScoreSums = {}
    for values in rows:
        # '' and NULL both mean absent, so two rows can fall in one group: add them up.
        key = tuple(value or None for value in values[: len(by)])
        name, total, count, left_out = values[len(by) :]
        if left_out and skipped is not None:
            skipped[key] = skipped.get(key, 0) + int(left_out)
        if not count:
            continue
        before = sums.setdefault(key, {}).get(name, (0.0, 0))
        sums[key][name] = (before[0] + float(total), before[1] + int(count))
    return sums


def _rolled_rows(
    connection: sa.Connection,
    rolled: Sequence[tuple[int, int, int]],
    filters: Filters,
    by: Sequence[str],
    table: sa.Table = score_rollups,
) -> list[tuple[Any, ...]]:
    """(groups..., name, sum, count, skipped) from the score rollups (or the user score
    rollups) of whole buckets."""
    groups = [table.c[name] for name in by]
    spans = [
        sa.and_(
            table.c.granularity == granularity,
            table.c.bucket_start >= start,
            table.c.bucket_start < end,
        )
        for granularity, start, end in rolled
    ]
    query = (
        sa.select(
            *groups,
            table.c.name,
            sa.func.sum(table.c.value_sum),
            sa.func.sum(table.c.value_count),
            sa.func.sum(table.c.skipped),
        )
        .where(sa.or_(*spans), *(table.c[name] == value for name, value in filters.items()))
        .group_by(*groups, table.c.name)
    )
    return [tuple(row) for row in connection.execute(query)]


def _raw_rows(
    connection: sa.Connection,
    start_ms: int,
    end_ms: int,
    filters: Filters,
    by: Sequence[str],
    *,
    calls_in_window: int | None,
) -> list[tuple[Any, ...]]:
    """(groups..., name, sum, count, skipped) from the scores joined to the calls of a range."""
    stored = _count(connection) if calls_in_window is not None else 0
    from_scores = calls_in_window is not None and calls_in_window > CALLS_PER_SCORE * stored
    started: sa.ColumnElement[int] = calls.c.started_ms + 0 if from_scores else calls.c.started_ms
    # Grouped by expressions, not columns: SQLite would otherwise walk an index on a group
    # column (model, started_ms) for its order, a skip-scan twice as slow as the time range.
    groups = [calls.c[name] + "" for name in by]
    # Each aggregate guarded rather than a WHERE, so the same pass counts what it leaves out;
    # guarded, a value of 1e308 never reaches the sum (PostgreSQL refuses a float overflow).
    usable = sa.func.abs(scores.c.value) <= MAX_SCORE_MAGNITUDE
    query = (
        sa.select(
            *groups,
            scores.c.name,
            sa.func.sum(sa.case((usable, scores.c.value))),
            sa.func.count(sa.case((usable, 1))),
            sa.func.sum(sa.case((usable, 0), else_=1)),
        )
        .select_from(scores.join(calls, calls.c.id == scores.c.call_id))
        .where(
            started >= start_ms,
            started < end_ms,
            *call_conditions(filters, use_indexes=not from_scores),
        )
        .group_by(*groups, scores.c.name)
    )
    if from_scores and stored >= PARALLEL_SCORES:
        return [tuple(row) for row in _in_parallel(connection, query, stored)]
    return [tuple(row) for row in connection.execute(query)]


def means(named: dict[str, tuple[float, int]]) -> dict[str, float]:
    """Score name to mean value."""
    return {name: total / count for name, (total, count) in named.items()}


def merged(sums: ScoreSums) -> dict[str, tuple[float, int]]:
    """The sums of every group added together."""
    together: dict[str, tuple[float, int]] = {}
    for named in sums.values():
        for name, (total, count) in named.items():
            before = together.get(name, (0.0, 0))
            together[name] = (before[0] + total, before[1] + count)
    return together


EVALUATOR_RATES: dict[str, tuple[str, bool]] = {
    "refusal": ("refusal", False),
    "empty": ("empty", False),
    "truncated": ("truncated", False),
    "invalid_json": ("json_valid", True),
    "pii_leak": ("pii_leak", False),
}
"""Rate name to (the evaluator score it is the mean of, whether the score counts the opposite).

The built-in evaluators score 1.0 when they find what they look for (docs/quality.md), so a rate
is a mean; ``json_valid`` scores 1.0 for valid JSON, so the invalid-JSON rate is one minus it."""


@dataclass(frozen=True, slots=True)
class Rate:
    """How often an evaluator found what it looks for, over ``count`` evaluated calls."""

    rate: float
    count: int


@dataclass(frozen=True, slots=True)
class QualityGroup:
    """One group's evaluator rates and the mean of every other score (judge, yours)."""

    key: tuple[str | None, ...]
    rates: dict[str, Rate]
    scores: dict[str, Rate]
    """Score name to its mean (``rate``) over ``count`` scores."""
    skipped_rows: int = 0


def quality_by(
    connection: sa.Connection, window: Window, filters: Filters, by: Sequence[str] = ()
) -> list[QualityGroup]:
    """Evaluator rates and mean scores per group of ``by``, over the scores of the window's calls."""
    skipped: dict[tuple[str | None, ...], int] = {}
    sums = score_sums(connection, window, filters, by, skipped=skipped)
    evaluator_names = {score for score, _ in EVALUATOR_RATES.values()}
    found: list[QualityGroup] = []
    for key in sorted(set(sums) | set(skipped), key=lambda k: tuple(v or "" for v in k)):
        named = sums.get(key, {})
        rates: dict[str, Rate] = {}
        for rate, (score, opposite) in EVALUATOR_RATES.items():
            if score in named:
                total, count = named[score]
                mean = total / count
                rates[rate] = Rate(1.0 - mean if opposite else mean, count)
        scores = {
            name: Rate(total / count, count)
            for name, (total, count) in sorted(named.items())
            if name not in evaluator_names
        }
        found.append(QualityGroup(key, rates, scores, skipped.get(key, 0)))
    return found


def _in_parallel(connection: sa.Connection, query: sa.Select[Any], stored: int) -> list[Any]:
    """``query`` run over slices of the scores by ``call_id``, one thread and connection each."""
    engine = connection.engine
    threads = _threads()
    # Each in-memory SQLite connection is a database of its own: only files can be shared.
    memory = engine.dialect.name == "sqlite" and engine.url.database in (None, "", ":memory:")
    if threads < 2 or memory:
        return list(connection.execute(query))
    cuts = sorted(
        {
            connection.execute(
                sa.select(scores.c.call_id)
                .order_by(scores.c.call_id)
                .limit(1)
                .offset(stored * i // threads)
            ).scalar_one()
            for i in range(1, threads)
        }
    )
    slices = [
        query.where(
            *([] if low is None else [scores.c.call_id >= low]),
            *([] if high is None else [scores.c.call_id < high]),
        )
        for low, high in zip([None, *cuts], [*cuts, None], strict=True)
    ]

    def run(part: sa.Select[Any]) -> list[Any]:
        with engine.connect() as own:
            return list(own.execute(part))

    with ThreadPoolExecutor(len(slices)) as pool:
        return [row for rows in pool.map(run, slices) for row in rows]


def _threads() -> int:
    return min(MAX_THREADS, os.cpu_count() or 1)


def _count(connection: sa.Connection) -> int:
    return int(connection.execute(sa.select(sa.func.count()).select_from(scores)).scalar_one())
