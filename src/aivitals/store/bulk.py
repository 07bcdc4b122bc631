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
    """``statement`` (an INSERT of whole rows of one table), ready to run on many row dicts."""

    def __init__(self, statement: Insert, dialect: Dialect) -> None:
        table = statement.table
        self.statement = statement
        self.direct = isinstance(table, sqlalchemy.Table) and all(
            isinstance(column.type, _PLAIN_TYPES) for column in table.columns
        )
        compiled = statement.compile(dialect=dialect, column_keys=[c.key for c in table.columns])
        self.sql = str(compiled)
        names = compiled.positiontup
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


def _getter(names: Sequence[str]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    if len(names) == 1:
        only = names[0]
        return lambda row: (row[only],)
    return operator.itemgetter(*names)
