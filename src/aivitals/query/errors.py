"""The one error queries raise for input they cannot answer."""

from __future__ import annotations


class QueryError(ValueError):
    """A query was asked in a way that cannot be answered: ``parameter`` names what was wrong
    (``since``, ``where``, ``by``, ``step``...; None when no one parameter is), ``problem``
    says what is wrong with it and what would work.

    Each front end renders the two its own way: the HTTP API as a 422 naming ``query.<parameter>``,
    the command line as its option. ``str()`` is the command line's form, one line:

    >>> error = QueryError("by", "unknown field 'colour'; use model, team")
    >>> error.parameter, error.problem
    ('by', "unknown field 'colour'; use model, team")
    >>> str(error)
    "--by: unknown field 'colour'; use model, team"
    """

    def __init__(self, parameter: str | None, problem: str) -> None:
        super().__init__(parameter, problem)
        self.parameter = parameter
        self.problem = problem

    def __str__(self) -> str:
        return f"--{self.parameter}: {self.problem}" if self.parameter else self.problem


class AnswerTooLarge(QueryError):
    """The answer asked for is larger than one query may build; the problem says the limit and
    how to ask for less (a larger step, a shorter window). The HTTP API answers it with a 400."""
