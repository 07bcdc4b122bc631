"""Queries over the store: summaries, breakdowns, time series, spend, top spenders and calls.

Start with `Queries` (over a SQLAlchemy engine), a `Window` from `parse_since`, and `Filters`
from `parse_where`; see docs/queries.md for how each is answered.
"""

from aivitals.query.calls import CallsPage, CallWithScores
from aivitals.query.errors import AnswerTooLarge, QueryError
from aivitals.query.filters import FIELDS, Filters, check_by, parse_where
from aivitals.query.measures import Measures
from aivitals.query.queries import NO_FILTERS, Queries
from aivitals.query.series import Point, SpendBucket, TopItem
from aivitals.query.summary import BreakdownRow, Report, Summary
from aivitals.query.window import Window, parse_since

__all__ = [
    "FIELDS",
    "NO_FILTERS",
    "AnswerTooLarge",
    "BreakdownRow",
    "CallWithScores",
    "CallsPage",
    "Filters",
    "Measures",
    "Point",
    "Queries",
    "QueryError",
    "Report",
    "SpendBucket",
    "Summary",
    "TopItem",
    "Window",
    "check_by",
    "parse_since",
    "parse_where",
]
