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


class AnswerTooLarge(QueryError):
    """The answer asked for is larger than one query may build; the message says the limit and
    how to ask for less (a larger step, a shorter window). The HTTP API answers it with a 400."""
