"""The values each field takes in a window: what a filter can be set to."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from aivitals.query.collect import collect
from aivitals.query.filters import Filters
from aivitals.query.window import Window

FILTER_FIELDS = ("model", "provider", "feature", "team", "user", "environment")
"""The fields listed when none are named: those the dashboard offers as filters."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FilterValue:
    """A value a field takes in the window, and how many calls have it."""

    value: str
    calls: int


def filter_values(
    connection: sa.Connection,
    window: Window,
    fields: Sequence[str] = FILTER_FIELDS,
    *,
    limit: int = 200,
) -> dict[str, list[FilterValue]]:
    """The values each field takes in the window, most calls first, at most ``limit`` each.

    Absent values are left out. Answered from rollups for every field but ``user``.
    """
    found: dict[str, list[FilterValue]] = {}
    for name in fields:
        totals = collect(
            connection,
            (window.start_ms, window.end_ms),
            Filters(),
            (name,),
            percentiles=False,
            sums=("calls",),
        )
        values = [
            FilterValue(value=key[1], calls=int(totals.ints["calls"][gid]))
            for gid, key in enumerate(totals.keys)
            if key[1] and totals.ints["calls"][gid]
        ]
        values.sort(key=lambda v: (-v.calls, v.value))
        found[name] = values[:limit]
    return found
