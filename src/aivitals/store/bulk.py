"""`BulkInsert`: many rows through one INSERT compiled once, handed to the driver as they are.

SQLAlchemy Core spends about 11 µs per row of the ``calls`` table building and converting bind
parameters, a quarter of a store write. The values of a row of plain columns (text, integers,
floats, booleans, None) need no conversion: both sqlite3 and psycopg take them as they are. So
the statement is compiled once for the engine's dialect and executed with the driver's
``executemany`` (still through the connection, so transactions, events and error wrapping stay
SQLAlchemy's). A table with any other column type (dates, JSON, ...) would need SQLAlchemy's
conversions, so it goes the ordinary Core way.

>>> import sqlalchemy
>>> table = sqlalchemy.Table("t", sqlalchemy.MetaData(), sqlalchemy.Column("a", sqlalchemy.Integer))
>>> bulk = BulkInsert(sqlalchemy.insert(table), sqlalchemy.create_engine("sqlite://").dialect)
>>> bulk.sql, bulk.direct
('INSERT INTO t (a) VALUES (?)', True)
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.dml import Insert

# Types whose Python values (str, int, float, bool, None) every driver takes unconverted.
_PLAIN_TYPES = (sqlalchemy.String, sqlalchemy.Integer, sqlalchemy.Float, sqlalchemy.Boolean)


class BulkInsert:
    """``statement`` (an INSERT of whole rows of one table), ready to run on many row dicts.

    ``columns`` (the table's columns by default) is the order of the values `execute_values`
    takes, one tuple a row.
    """

    def __init__(
        self, statement: Insert, dialect: Dialect, *, columns: Sequence[str] | None = None
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

    def execute(self, connection: sqlalchemy.Connection, rows: Sequence[dict[str, Any]]) -> None:
        """Insert ``rows`` (dicts with every column of the table) inside the current transaction."""
        if not rows:
            return
        if not self.direct:
            connection.execute(self.statement, list(rows))
            return
        shape = self._shape
        parameters = [shape(row) for row in rows] if shape is not None else list(rows)
        connection.exec_driver_sql(self.sql, parameters)

    def execute_values(
        self, connection: sqlalchemy.Connection, rows: Sequence[tuple[Any, ...]]
    ) -> None:
        """`execute` for rows given as tuples of values in ``columns`` order."""
        if not rows:
            return
        if self._values_as_given:
            connection.exec_driver_sql(self.sql, list(rows))
            return
        columns = self.columns
        self.execute(connection, [dict(zip(columns, row, strict=True)) for row in rows])


def _getter(names: Sequence[str]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    if len(names) == 1:
        only = names[0]
        return lambda row: (row[only],)
    return operator.itemgetter(*names)
