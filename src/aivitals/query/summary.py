"""A window at a glance (`Summary`) and broken down by fields (`BreakdownRow`).

Both carry the same `Measures`; a breakdown row adds the values of its ``by`` fields, and rows
come most expensive first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from aivitals.query.collect import Totals, collect
from aivitals.query.filters import Filters
from aivitals.query.measures import Measures, measures_of
from aivitals.query.quality import ScoreSums, means, merged, score_sums
from aivitals.query.window import Window


@dataclass(frozen=True, slots=True, kw_only=True)
class Summary(Measures):
    """The `Measures` of every call in a window that passes the filters."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakdownRow(Measures):
    """The `Measures` of one group: the calls whose ``by`` fields have the values in ``group``."""

    group: dict[str, str | None] = field(default_factory=dict)
    """Field name to value, for each ``by`` field; None where calls have no value."""


@dataclass(frozen=True, slots=True)
class Report:
    """A window's `Summary` and its breakdown, read in one pass."""

    summary: Summary
    breakdown: list[BreakdownRow]


def summarize(
    connection: sa.Connection, window: Window, filters: Filters, *, quality: bool = True
) -> Summary:
    """The `Summary` of ``window``; a window without calls gives zeros and Nones."""
    totals = collect(connection, (window.start_ms, window.end_ms), filters)
    skipped: Skipped = {}
    scored = _scores(connection, window, filters, (), totals, skipped=skipped) if quality else {}
    found = measures_of(totals, 0 if totals.keys else None, means(merged(scored)))
    return Summary(**_plus(found, sum(skipped.values())))


def break_down(
    connection: sa.Connection,
    window: Window,
    filters: Filters,
    by: Sequence[str],
    *,
    quality: bool = True,
) -> list[BreakdownRow]:
    """One `BreakdownRow` per combination of ``by`` values that has calls, by cost descending."""
    return report(connection, window, filters, by, quality=quality, overall=False).breakdown


def report(
    connection: sa.Connection,
    window: Window,
    filters: Filters,
    by: Sequence[str],
    *,
    quality: bool = True,
    overall: bool = True,
) -> Report:
    """The summary and the breakdown by ``by`` together, from one read of the store."""
    by = tuple(by)
    totals = collect(connection, (window.start_ms, window.end_ms), filters, by, overall=overall)
    skipped: Skipped = {}
    scored = _scores(connection, window, filters, by, totals, skipped=skipped) if quality else {}
    rows = [
        BreakdownRow(
            group=dict(zip(by, key[1:], strict=True)),
            **_plus(
                measures_of(totals, gid, means(scored.get(key[1:], {}))),
                skipped.get(key[1:], 0),
            ),
        )
        for gid, key in enumerate(totals.keys)
    ]
    rows.sort(key=lambda row: (-row.total_cost_usd, -row.calls, _order(row.group.values())))
    summary = Summary()
    if totals.overall is not None:
        found = measures_of(totals.overall, 0, means(merged(scored)))
        summary = Summary(**_plus(found, sum(skipped.values())))
    return Report(summary, rows)


Skipped = dict[tuple[str | None, ...], int]
"""Scores left out as out of range, per group of ``by`` values."""


def _scores(
    connection: sa.Connection,
    window: Window,
    filters: Filters,
    by: tuple[str, ...],
    totals: Totals,
    *,
    skipped: Skipped,
) -> ScoreSums:
    calls = int(totals.ints["calls"].sum())
    if calls == 0:
        return {}
    return score_sums(connection, window, filters, by, calls_in_window=calls, skipped=skipped)


def _plus(found: dict[str, Any], skipped_scores: int) -> dict[str, Any]:
    """`measures_of`'s figures with the scores skipped as out of range counted in."""
    if skipped_scores:
        found["skipped_rows"] = found.get("skipped_rows", 0) + skipped_scores
    return found


def _order(values: Any) -> tuple[tuple[bool, str], ...]:
    """Ties in cost and calls go by value, absent values last."""
    return tuple((value is None, value or "") for value in values)
