"""`Queries`: every question the CLI, the dashboard and the API ask of a store, over one engine.

The front ends import no SQLAlchemy: they ask `Queries`, which turns a database that cannot
answer into a one-line `StoreError` and input it cannot use into a `QueryError`.

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

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

import sqlalchemy as sa

from aivitals.query.cache_impact import CacheImpact, cache_impact
from aivitals.query.calls import CallsPage, CallWithScores, list_calls
from aivitals.query.detail import CallDetail, call_detail
from aivitals.query.filters import Filters, check_by
from aivitals.query.histogram import LATENCY_EDGES_MS, HistogramSeries, latency_histogram
from aivitals.query.labels import CallLabels, call_labels
from aivitals.query.outcomes import OutcomeGroup, outcome_metrics
from aivitals.query.quality import QualityGroup, quality_by
from aivitals.query.raw import RawCalls
from aivitals.query.scores import ScorePoint, score_series
from aivitals.query.series import Point, SpendBucket, TopItem, spend, timeseries, top
from aivitals.query.summary import BreakdownRow, Report, Summary, break_down, report, summarize
from aivitals.query.values import FILTER_FIELDS, FilterValue, filter_values
from aivitals.query.window import Window, parse_since  # noqa: F401  # used by the doctest
from aivitals.store import schema
from aivitals.store.engine import store_error

if TYPE_CHECKING:
    from aivitals.query.baseline import Reference
    from aivitals.query.compare import Comparison
    from aivitals.query.drift import Drift

NO_FILTERS = Filters()
LOG_EVERY_S = 60.0
"""Skipped rows are logged at most this often per `Queries` (dashboards ask every few seconds)."""

logger = logging.getLogger("aivitals.query")


class _SkipLog:
    """One warning line about rows left out as out of range, at most every `LOG_EVERY_S`."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._next = 0.0
        self._held = 0

    def note(self, what: str, window: Window, skipped: int) -> None:
        if not skipped:
            return
        with self._lock:
            now = self._clock()
            self._held += skipped
            if now < self._next:
                return
            held, self._held, self._next = self._held, 0, now + LOG_EVERY_S
        logger.warning(
            "%s %s to %s: left out %d stored rows with values out of range (written by an "
            "older version or another tool; %d rows in all since the last such line)",
            what,
            window.start.isoformat(),
            window.end.isoformat(),
            skipped,
            held,
        )


class Queries:
    """Read-only queries over a store's tables; each opens its own connection.

    Aggregates answer from rollups whenever every filter and group is a rollup dimension (all
    fields but ``user``), reading raw calls only for the partial minutes at the window's edges;
    see docs/queries.md.
    """

    def __init__(self, engine: sa.Engine, *, name: str | None = None) -> None:
        self.engine = engine
        self.name = name or engine.url.render_as_string(hide_password=True)
        """The store as errors name it (a URL without its password, unless given)."""
        self._skips = _SkipLog()

    @contextmanager
    def _connection(self) -> Iterator[sa.Connection]:
        """A connection, with a database that cannot answer turned into a one-line `StoreError`."""
        try:
            with self.engine.connect() as connection:
                yield connection
        except (sa.exc.DBAPIError, sa.exc.TimeoutError) as exc:
            raise store_error(exc, doing="reading", where=self.name) from exc

    def check_readable(self) -> None:
        """Raise `StoreError` unless the store's ``calls`` table can be read.

        A trivial ``SELECT 1`` passes on SQLite whatever the file holds; reading one row does
        not (a file of another kind, a dropped table).
        """
        try:
            with self.engine.connect() as connection:
                connection.execute(sa.select(schema.calls.c.id).limit(1)).all()
        except Exception as exc:
            raise store_error(exc, doing="reading", where=self.name) from exc

    def summary(
        self, window: Window, filters: Filters = NO_FILTERS, *, quality: bool = True
    ) -> Summary:
        """Counts, spend, tokens, latency, speed, cache and quality of the window's calls.

        ``quality=False`` skips the scores (left empty), which over a long window with many
        scores is most of the work.
        """
        with self._connection() as connection:
            found = summarize(connection, window, filters, quality=quality)
        self._skips.note("summary", window, found.skipped_rows)
        return found

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
        with self._connection() as connection:
            rows = break_down(connection, window, filters, fields, quality=quality)
        self._skips.note("breakdown", window, sum(row.skipped_rows for row in rows))
        return rows

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
        with self._connection() as connection:
            found = report(connection, window, filters, fields, quality=quality)
        self._skips.note("report", window, found.summary.skipped_rows)
        return found

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
        with self._connection() as connection:
            points = timeseries(connection, window, filters, step, by)
        self._skips.note("timeseries", window, sum(point.skipped_rows for point in points))
        return points

    def spend(
        self, window: Window, filters: Filters = NO_FILTERS, step: str = "day", tz: str = "UTC"
    ) -> list[SpendBucket]:
        """Spend per local ``hour`` or ``day`` in time zone ``tz``: the budget view."""
        with self._connection() as connection:
            buckets = spend(connection, window, filters, step, tz)
        self._skips.note("spend", window, sum(bucket.skipped_rows for bucket in buckets))
        return buckets

    def top(
        self, window: Window, filters: Filters = NO_FILTERS, by: str = "user", limit: int = 10
    ) -> list[TopItem]:
        """The ``user``, ``feature``, ``team`` or ``model`` values that spent most."""
        with self._connection() as connection:
            return top(connection, window, filters, by, limit)

    def calls(
        self, window: Window, filters: Filters = NO_FILTERS, *, limit: int = 50, offset: int = 0
    ) -> list[CallWithScores]:
        """A page of the window's calls, newest first, each with its scores.

        Stored rows that cannot be read are left out; `calls_page` says how many.
        """
        return self.calls_page(window, filters, limit=limit, offset=offset).calls

    def calls_page(
        self, window: Window, filters: Filters = NO_FILTERS, *, limit: int = 50, offset: int = 0
    ) -> CallsPage:
        """`calls`, with the count of stored rows of the page left out as unreadable."""
        with self._connection() as connection:
            page = list_calls(connection, window, filters, limit=limit, offset=offset)
        self._skips.note("calls", window, page.skipped_rows)
        return page

    def histogram(
        self, window: Window, filters: Filters = NO_FILTERS, by: str | None = None
    ) -> list[HistogramSeries]:
        """Calls per latency bin (`LATENCY_EDGES_MS`), per ``by`` value when given."""
        if by is not None:
            check_by([by])
        with self._connection() as connection:
            series = latency_histogram(connection, window, filters, by, LATENCY_EDGES_MS)
        self._skips.note("histogram", window, sum(s.skipped_rows for s in series))
        return series

    def score_means(
        self, window: Window, filters: Filters = NO_FILTERS, step: str = "hour"
    ) -> list[ScorePoint]:
        """Each score's mean per UTC ``step`` bucket of its call's start, oldest first."""
        with self._connection() as connection:
            points = score_series(connection, window, filters, step)
        self._skips.note("quality", window, sum(p.skipped_rows for p in points))
        return points

    def values(
        self, window: Window, fields: Sequence[str] = FILTER_FIELDS, *, limit: int = 200
    ) -> dict[str, list[FilterValue]]:
        """The values each field takes among the window's calls, most calls first."""
        names = check_by(fields)
        with self._connection() as connection:
            return filter_values(connection, window, names, limit=limit)

    def call(self, call_id: str) -> CallDetail | str | None:
        """One call with its scores and trace; None when not stored, `UNREADABLE` when it
        cannot be read (see `call_detail`)."""
        with self._connection() as connection:
            return call_detail(connection, call_id)

    def call_labels(self, ids: Iterable[str]) -> dict[str, CallLabels]:
        """The (model, feature) of the stored calls among ``ids`` (see `query.labels`)."""
        with self._connection() as connection:
            return call_labels(connection, ids)

    def compare(
        self,
        window: Window,
        filters: Filters = NO_FILTERS,
        by: str = "prompt_version",
        *,
        a: str | None = None,
        b: str | None = None,
        min_samples: int = 30,
    ) -> Comparison:
        """The calls whose ``by`` is B against those where it is A (see `query.compare`).

        ``min_samples`` is `compare_stats.MIN_SAMPLES`, written out: that module imports scipy,
        over a second's work that only a comparison should pay.
        """
        from aivitals.query.compare import compare  # noqa: PLC0415  # scipy, see above

        with self._connection() as connection:
            found = compare(connection, window, filters, by, a=a, b=b, min_samples=min_samples)
        self._skips.note("compare", window, found.skipped_rows)
        return found

    def drift(
        self,
        window: Window,
        filters: Filters = NO_FILTERS,
        by: Sequence[str] = (),
        *,
        baseline: Reference | str = "7d",
        signals: Sequence[str] | None = None,
        min_samples: int = 200,
    ) -> Drift:
        """Each signal per group of ``by``, ``window`` against ``baseline`` (``7d``: the same
        hours of the 7 days before; ``pinned:NAME``; see `query.drift`). ``min_samples`` is
        `drift.MIN_SAMPLES` written out: that module imports scipy."""
        from aivitals.query.baseline import resolve  # noqa: PLC0415  # scipy, see above
        from aivitals.query.drift import compare_drift  # noqa: PLC0415

        names = check_by(by)
        with self._connection() as connection:
            reference = resolve(connection, window, baseline)
            return compare_drift(
                connection,
                window,
                reference,
                filters,
                names,
                signals=signals,
                min_samples=min_samples,
            )

    def outcomes(
        self, window: Window, filters: Filters = NO_FILTERS, by: Sequence[str] = ()
    ) -> list[OutcomeGroup]:
        """Labelled-outcome metrics per task and group of ``by`` (see `query.outcomes`).

        Raises `MissingExtra` (a `QueryError`) when scikit-learn is not installed.
        """
        names = check_by(by)
        with self._connection() as connection:
            return outcome_metrics(connection, window, filters, names)

    def quality(
        self, window: Window, filters: Filters = NO_FILTERS, by: Sequence[str] = ()
    ) -> list[QualityGroup]:
        """Evaluator rates and mean scores per group of ``by`` (see `query.quality`)."""
        names = check_by(by)
        with self._connection() as connection:
            found = quality_by(connection, window, filters, names)
        self._skips.note("quality", window, sum(group.skipped_rows for group in found))
        return found

    def cache_impact(self, window: Window, filters: Filters = NO_FILTERS) -> CacheImpact:
        """Calls, spend, spend and upstream time avoided, and latency per cache level, and the
        guardrails' actions (see `query.cache_impact`)."""
        with self._connection() as connection:
            found = cache_impact(connection, window, filters)
        self._skips.note("cache impact", window, found.skipped_rows)
        return found

    def raw_calls(self, window: Window, filters: Filters = NO_FILTERS) -> RawCalls:
        """The window's readable calls as pages of stored columns, oldest first (for export)."""
        return RawCalls(self._connection, window, filters)
