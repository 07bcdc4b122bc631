"""Raw stored calls, page by page, oldest first: what an export writes out.

The rows are the store's columns as they are (epoch milliseconds, tags as JSON text), with the
kind of each column, so a writer can type a file's columns before it sees a value. A row that
cannot be read back as a call (a value out of range, text that is not valid Unicode: written by
an older version or another tool) is left out and counted, as every read does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any, Literal

import sqlalchemy as sa

from aivitals.query.filters import Filters, call_conditions
from aivitals.query.window import Window
from aivitals.store.rows import readable_call
from aivitals.store.schema import calls

PAGE = 5000
"""Rows read per query: a page is in memory at a time, never the whole window."""

Kind = Literal["int", "float", "bool", "text"]


def _kind(column: sa.Column[Any]) -> Kind:
    if isinstance(column.type, sa.Boolean):
        return "bool"
    if isinstance(column.type, sa.Integer):
        return "int"
    if isinstance(column.type, sa.Float):
        return "float"
    return "text"


RAW_COLUMNS: dict[str, Kind] = {
    column.name: _kind(column) for column in calls.columns if column.name != "cost_nusd"
}
"""Each column a raw row holds, in the table's order, and its kind (the cost is in ``cost_usd``)."""


class RawCalls:
    """The readable stored calls of a window that match the filters, as pages of column dicts.

    Iterate it once; ``skipped_rows`` then says how many stored rows were left out as unreadable.
    Pages follow a keyset on (started_ms, id), so each query is an index range, however deep.
    """

    def __init__(
        self,
        connect: Callable[[], AbstractContextManager[sa.Connection]],
        window: Window,
        filters: Filters,
        *,
        page: int = PAGE,
    ) -> None:
        self._connect = connect
        self._window = window
        self._filters = filters
        self._page = page
        self.skipped_rows = 0

    def __iter__(self) -> Iterator[list[dict[str, Any]]]:
        conditions = [
            calls.c.started_ms >= self._window.start_ms,
            calls.c.started_ms < self._window.end_ms,
            *call_conditions(self._filters),
        ]
        selected = [calls.c[name] for name in RAW_COLUMNS]
        after: tuple[int, str] | None = None
        with self._connect() as connection:
            while True:
                query = sa.select(*selected).where(*conditions)
                if after is not None:
                    query = query.where(sa.tuple_(calls.c.started_ms, calls.c.id) > after)
                query = query.order_by(calls.c.started_ms, calls.c.id).limit(self._page)
                rows = [dict(row._mapping) for row in connection.execute(query)]
                if not rows:
                    return
                after = (rows[-1]["started_ms"], rows[-1]["id"])
                readable = [row for row in rows if readable_call(row) is not None]
                self.skipped_rows += len(rows) - len(readable)
                if readable:
                    yield readable
