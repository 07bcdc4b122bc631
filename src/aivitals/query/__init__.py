"""Queries over the store: summaries, breakdowns, time series, spend, top spenders and calls.

Start with `Queries` (over a SQLAlchemy engine), a `Window` from `parse_since`, and `Filters`
from `parse_where`; see docs/queries.md for how each is answered. Every read of the store by the
command line, the dashboard and the HTTP API goes through here.
"""

from aivitals.query.calls import MAX_OFFSET, CallsPage, CallWithScores
from aivitals.query.detail import UNREADABLE, CallDetail
from aivitals.query.errors import AnswerTooLarge, QueryError
from aivitals.query.filters import FIELDS, Filters, check_by, parse_where
from aivitals.query.histogram import LATENCY_EDGES_MS, HistogramSeries
from aivitals.query.measures import Measures
from aivitals.query.queries import NO_FILTERS, Queries
from aivitals.query.raw import RAW_COLUMNS, RawCalls
from aivitals.query.scores import ScorePoint
from aivitals.query.series import Point, SpendBucket, TopItem
from aivitals.query.summary import BreakdownRow, Report, Summary
from aivitals.query.values import FILTER_FIELDS, FilterValue
from aivitals.query.window import Window, parse_since

__all__ = [
    "FIELDS",
    "FILTER_FIELDS",
    "LATENCY_EDGES_MS",
    "MAX_OFFSET",
    "NO_FILTERS",
    "RAW_COLUMNS",
    "UNREADABLE",
    "AnswerTooLarge",
    "BreakdownRow",
    "CallDetail",
    "CallWithScores",
    "CallsPage",
    "FilterValue",
    "Filters",
    "HistogramSeries",
    "Measures",
    "Point",
    "Queries",
    "QueryError",
    "RawCalls",
    "Report",
    "ScorePoint",
    "SpendBucket",
    "Summary",
    "TopItem",
    "Window",
    "check_by",
    "parse_since",
    "parse_where",
]
