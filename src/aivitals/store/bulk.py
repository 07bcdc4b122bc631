"""`BulkInsert`: many rows through one INSERT compiled once, handed to the driver as they are.

SQLAlchemy Core spends about 11 µs per row of the ``calls`` table building and converting bind
parameters, a quarter of a store write. The values of a row of plain columns (text, integers,
floats, booleans, None) need no conversion: both sqlite3 and psycopg take them as they are. So
the statement is compiled once for the engine's dialect and executed with the driver's
``executemany`` (still through the connection, so transactions, events and error wrapping stay
SQLAlchemy's). A table with any other column type (dates, JSON, ...) would need SQLAlchemy's
conversions, so it goes the ordinary Core way.

On SQLite the rows go in several to a statement (``INSERT ... VALUES (...), (...), ...``), not
through ``executemany``: CPython's sqlite3 releases the GIL around every ``sqlite3_step``, so
``executemany`` of 500 rows hands the GIL over 500 times, and while the application thread is
busy each hand-over waits for the interpreter's switch interval to get it back (the store then
kept up with a few thousand calls a second). A statement of many rows is one step. The values
are bound as they were, one parameter each, so nothing is converted on the way (a JSON text of
the batch would have SQLite parse the floats back).

On SQLite a statement's rows are padded to a size from a short ladder (`rung`): each text is
prepared once and cached by sqlite3, and exact sizes made a new text of megabytes for every
batch. A padding row repeats the statement's last row, which an ON CONFLICT DO NOTHING insert
skips; for an upsert the ``padding`` columns (its sums) are 0 in it, and the upsert's WHERE
leaves the stored row alone for a row that counts nothing (an index probe, not an update).

>>> import sqlalchemy
>>> table = sqlalchemy.Table("t", sqlalchemy.MetaData(), sqlalchemy.Column("a", sqlalchemy.Integer))
>>> bulk = BulkInsert(sqlalchemy.insert(table), sqlalchemy.create_engine("sqlite://").dialect)
>>> bulk.sql, bulk.direct
('INSERT INTO t (a) VALUES (?)', True)
>>> bulk.statement_sizes(2500)
[1000, 1000, 500]
"""

from __future__ import annotations

import functools
import itertools
import operator
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import sqlalchemy
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.dml import Insert

# Types whose Python values (str, int, float, bool, None, bytes) every driver takes unconverted.
_PLAIN_TYPES = (
    sqlalchemy.String,
    sqlalchemy.Integer,
    sqlalchemy.Float,
    sqlalchemy.Boolean,
    sqlalchemy.LargeBinary,
)
# Rows per statement at most (and SQLite's parameter cap: 762 calls a statement).
_MOST_ROWS = 1000
# SQLite's default cap on parameters a statement (999 before 3.32).
_MOST_PARAMETERS = 32_766 if sqlite3.sqlite_version_info >= (3, 32) else 999
# Values an IN list is padded to at most (its chunks are smaller).
_MOST_IN = 1024

T = TypeVar("T")


class BulkInsert:
    """``statement`` (an INSERT of whole rows of one table), ready to run on many row dicts.

    ``columns`` (the table's columns by default) is the order of the values `execute_values`
    takes, one tuple a row.
    """

    def __init__(
        self,
        statement: Insert,
        dialect: Dialect,
        *,
        columns: Sequence[str] | None = None,
        padding: Sequence[str] | None = None,
    ) -> None:
        table = statement.table
        self.statement = statement
        self.direct = isinstance(table, sqlalchemy.Table) and all(
            isinstance(column.type, _PLAIN_TYPES) for column in table.columns
        )
        self.columns = (
            tuple(columns) if columns is not None else tuple(c.key for c in table.columns)
        )
        compiled = statement.compile(dialect=dialect, column_keys=list(self.columns))
        self.sql = str(compiled)
        names = compiled.positiontup
        # Tuples in ``columns`` order go to the driver as they are when the compiled statement
        # takes its parameters in that very order (sqlite3's qmark); else they are reshaped.
        self._values_as_given = (
            self.direct and compiled.positional and tuple(names or ()) == self.columns
        )
        # Positional paramstyles (sqlite3's qmark) take tuples in the compiled order; named ones
        # (psycopg's pyformat) take the row dicts themselves.
        self._shape: Callable[[dict[str, Any]], Any] | None = (
            _getter(names) if compiled.positional and names else None
        )
        # The statement's text around its one group of placeholders, to repeat the group.
        self._around: tuple[str, str, str] | None = None
        self._most_rows = 0
        group = "(" + ", ".join("?" * len(names or ())) + ")"
        if self.direct and dialect.name == "sqlite" and names and self.sql.count(group) == 1:
            head, tail = self.sql.split(group)
            self._around = (head, group, tail)
            self._most_rows = min(_MOST_ROWS, _MOST_PARAMETERS // len(names))
        # Padding (see `rung`): a row repeating the statement's last, with the ``padding``
        # columns 0, so that it changes nothing (a conflict for an ON CONFLICT DO NOTHING insert;
        # for an upsert, sums of 0, which its WHERE skips). None: rows as they are.
        self._pad_zeros: tuple[int, ...] | None = None
        if padding is not None and self._around is not None and names:
            self._pad_zeros = tuple(names.index(name) for name in padding)
        # The texts of the rungs (see `rung`), a few sizes besides for unpadded statements.
        self._sql_for = functools.lru_cache(maxsize=16)(self._sql_of)

    def statement_sizes(self, rows: int) -> list[int]:
        """Rows in each statement that inserts ``rows`` rows ([1] * rows for ``executemany``)."""
        most = self._most_rows
        if not most:
            return [1] * rows
        sizes = [most] * (rows // most)
        if rows % most:
            sizes.append(rows % most)
        return sizes

    def _sql_of(self, size: int) -> str:
        head, group, tail = self._around or ("", "", "")
        return head + ", ".join([group] * size) + tail

    def execute(self, connection: sqlalchemy.Connection, rows: Sequence[dict[str, Any]]) -> None:
        """Insert ``rows`` (dicts with every column of the table) inside the current transaction."""
        if not rows:
            return
        if not self.direct:
            connection.execute(self.statement, list(rows))
            return
        shape = self._shape
        if self._around is not None and shape is not None:
            self._execute_rows(connection, [shape(row) for row in rows])
            return
        parameters = [shape(row) for row in rows] if shape is not None else list(rows)
        connection.exec_driver_sql(self.sql, parameters)

    def execute_values(
        self, connection: sqlalchemy.Connection, rows: Sequence[tuple[Any, ...]]
    ) -> None:
        """`execute` for rows given as tuples of values in ``columns`` order."""
        if not rows:
            return
        if self._values_as_given:
            if self._around is not None:
                self._execute_rows(connection, rows)
            else:
                connection.exec_driver_sql(self.sql, list(rows))
            return
        columns = self.columns
        self.execute(connection, [dict(zip(columns, row, strict=True)) for row in rows])

    def _execute_rows(
        self, connection: sqlalchemy.Connection, rows: Sequence[tuple[Any, ...]]
    ) -> None:
        """Rows in the compiled order, several to a statement (see the module's docstring)."""
        start = 0
        chain = itertools.chain.from_iterable
        zeros = self._pad_zeros
        for size in self.statement_sizes(len(rows)):
            chunk = rows[start : start + size]
            start += size
            if zeros is not None:
                padded = rung(size, self._most_rows)
                if padded > size:
                    pad = list(chunk[-1])
                    for at in zeros:
                        pad[at] = 0
                    chunk = [*chunk, *itertools.repeat(tuple(pad), padded - size)]
            connection.exec_driver_sql(self._sql_for(len(chunk)), tuple(chain(chunk)))


def rung(rows: int, most: int) -> int:
    """The size a statement of ``rows`` rows is padded to: the next power of two, at most ``most``.

    >>> [rung(n, 762) for n in (1, 3, 4, 5, 300, 700)]
    [1, 4, 4, 8, 512, 762]

    sqlite3 keeps every statement text it prepared in a per-connection cache (128 of them),
    and a statement of 700 rows of ``calls`` holds about 2.5 MB there. Batches come in every
    size, so statements of exact sizes filled that cache with a new text a batch: 20-30 MB a
    connection, turned over all the time, and the gateway's RSS grew by 22 MB per 100,000
    requests in a soak (glibc's memory in use, not Python's). Padded to a rung, a statement has
    at most a dozen texts, each prepared once; the padding rows change nothing (see
    `BulkInsert`'s ``padding``, `padded_in`) and cost an index probe each.
    """
    return min(most, 1 << max(0, rows - 1).bit_length())


def padded_in(values: Sequence[T]) -> tuple[str, tuple[T, ...]]:
    """``?, ?, ...`` for an ``IN (...)`` of ``values`` padded to its `rung` with the last value
    again (which an IN ignores), and the values to bind.

    >>> padded_in(["a", "b", "c"])
    ('?, ?, ?, ?', ('a', 'b', 'c', 'c'))
    """
    if not values:
        raise ValueError("an IN list needs at least one value")
    size = rung(len(values), _MOST_IN)
    return placeholders(size), (*values, *itertools.repeat(values[-1], size - len(values)))


@functools.lru_cache(maxsize=16)
def placeholders(count: int) -> str:
    """``?, ?, ...``: ``count`` qmark parameters, for an ``IN (...)`` run with the driver.

    >>> placeholders(3)
    '?, ?, ?'

    SQLAlchemy compiles an expanding ``IN`` anew for every statement, a bound name a value:
    about 2 µs a call of a batch's write for each of its id checks on SQLite.
    """
    return ", ".join("?" * count)


def _getter(names: Sequence[str]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    if len(names) == 1:
        only = names[0]
        return lambda row: (row[only],)
    return operator.itemgetter(*names)
