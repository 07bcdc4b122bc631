"""`Queries`: every question the CLI, the dashboard and the API ask of a store, over one engine.

>>> import sqlalchemy as sa
>>> from datetime import UTC, datetime
>>> from aivitals.store.schema import metadata
>>> engine = sa.create_engine("sqlite://")
>>> metadata.create_all(engine)
>>> window = parse_since("24h", now=datetime(2026, 11, 3, tzinfo=UTC))
>>> Queries(engine).summary(window).calls
0
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from aivitals.query.calls import CallWithScores, list_calls
from aivitals.query.filters import Filters, check_by
from aivitals.query.series import Point, SpendBucket, TopItem, spend, timeseries, top
from aivitals.query.summary import BreakdownRow, Report, Summary, break_down, report, summarize
from aivitals.query.window import Window, parse_since  # noqa: F401  # used by the doctest

NO_FILTERS = Filters()


class Queries:
    """Read-only queries over a store's tables; each opens its own connection.

    Aggregates answer from rollups whenever every filter and group is a rollup dimension (all
    fields but ``user``), reading raw calls only for the partial minutes at the window's edges;
    see docs/queries.md.
    """

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def summary(
        self, window: Window, filters: Filters = NO_FILTERS, *, quality: bool = True
    ) -> Summary:
        """Counts, spend, tokens, latency, speed, cache and quality of the window's calls.

        ``quality=False`` skips the scores (left empty), which over a long window with many
        scores is most of the work.
        """
        with self.engine.connect() as connection:
            return summarize(connection, window, filters, quality=quality)

    def breakdown(
        self,
        window: Window,
        filters: Filters = NO_FILTERS,
        by: Sequence[str] = ("model",),
        *,
        quality: bool = True,
    ) -> list[BreakdownRow]:
        """The summary's measures per combination of ``by`` values, most expensive first."""
        fields = check_by(by)
        with self.engine.connect() as connection:
            return break_down(connection, window, filters, fields, quality=quality)

    def report(
        self,
        window: Window,
        filters: Filters = NO_FILTERS,
        by: Sequence[str] = ("model",),
        *,
        quality: bool = True,
    ) -> Report:
        """`summary` and `breakdown` together, from one read of the store: about half the work."""
        fields = check_by(by)
        with self.engine.connect() as connection:
            return report(connection, window, filters, fields, quality=quality)

    def timeseries(
        self,
        window: Window,
        filters: Filters = NO_FILTERS,
        step: str = "hour",
        by: str | None = None,
    ) -> list[Point]:
        """Calls, errors, spend, tokens and latency percentiles per UTC ``step`` (and ``by`` value)."""
        if by is not None:
            check_by([by])
        with self.engine.connect() as connection:
            return timeseries(connection, window, filters, step, by)

    def spend(
        self, window: Window, filters: Filters = NO_FILTERS, step: str = "day", tz: str = "UTC"
    ) -> list[SpendBucket]:
        """Spend per local ``hour`` or ``day`` in time zone ``tz``: the budget view."""
        with self.engine.connect() as connection:
            return spend(connection, window, filters, step, tz)

    def top(
        self, window: Window, filters: Filters = NO_FILTERS, by: str = "user", limit: int = 10
    ) -> list[TopItem]:
        """The ``user``, ``feature``, ``team`` or ``model`` values that spent most."""
        with self.engine.connect() as connection:
            return top(connection, window, filters, by, limit)

    def calls(
        self, window: Window, filters: Filters = NO_FILTERS, *, limit: int = 50, offset: int = 0
    ) -> list[CallWithScores]:
        """A page of the window's calls, newest first, each with its scores."""
        with self.engine.connect() as connection:
            return list_calls(connection, window, filters, limit=limit, offset=offset)
