"""The one error queries raise for input they cannot answer."""

from __future__ import annotations


class QueryError(ValueError):
    """A query was asked in a way that cannot be answered; the message says what would work.

    It is one line, written for the person at the command line:

    >>> raise QueryError("--by: unknown field 'colour'; use model, team")
    Traceback (most recent call last):
    ...
    aivitals.query.errors.QueryError: --by: unknown field 'colour'; use model, team
    """
