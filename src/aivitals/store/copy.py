"""Copying a whole store to another engine: SQLite to PostgreSQL, or back, table by table.

Every table of the history goes (calls, scores, outcomes, contents, rollups, score rollups, user
and model rollups, baselines) row for row, in batches, so the rollups of every kind arrive as they
were and need no recomputing (the raw calls behind old rollups may already have been deleted by
retention, and the model rollups' counts of the out-of-range rows an older writer left go with
them).
Leader leases and their inbox stay behind: they say which running process leads now and what
the others ask of it, not what happened, and a new store starts with none.

The source is read in one snapshot (a read transaction; REPEATABLE READ on PostgreSQL), so a
store still being written copies consistently. The target is written in one transaction: a copy
that fails part way leaves the target as it was. At the end the target's row counts and rollup
totals are compared with the source's.

>>> import tempfile, pathlib
>>> from aivitals.model import Call
>>> from aivitals.store.sql import SqlStore
>>> folder = tempfile.TemporaryDirectory()
>>> source = SqlStore.open(pathlib.Path(folder.name) / "a.db")
>>> _ = source.write([Call(provider="openai", model="gpt-4o", latency_ms=120.0)], [])
>>> target = SqlStore.open(pathlib.Path(folder.name) / "b.db")
>>> copied = copy_store(source, target)
>>> copied.rows["calls"], copied.rows["rollups"]
(1, 3)
>>> source.close(); target.close(); folder.cleanup()
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy

from aivitals.store import schema
from aivitals.store.engine import WRITE_OPTION, lock_for_write, store_error
from aivitals.store.errors import StoreError
from aivitals.store.sql import SqlStore

BATCH_ROWS = 5000
"""Rows read and written at a time: a few megabytes of calls, whatever the history's size."""

LEFT_BEHIND = frozenset({"meta", "leases", "lease_inbox"})
"""``meta`` is each store's own (marker and schema version); leases and their inbox are live
state among running processes, not history."""

Progress = Callable[[str, int, int], None]
"""Called after each batch with the table's name, rows copied so far and the table's total."""


@dataclass
class Copied:
    """What a copy moved: rows per table (in the order copied), and the totals it verified."""

    rows: dict[str, int] = field(default_factory=dict)
    checked: dict[str, int] = field(default_factory=dict)


def tables() -> list[sqlalchemy.Table]:
    """The tables a copy moves, parents before children."""
    return [t for t in schema.metadata.sorted_tables if t.name not in LEFT_BEHIND]


def occupied(store: SqlStore) -> dict[str, int]:
    """The tables of ``store`` that hold rows, with their counts (empty for an empty store)."""
    with store.engine.connect() as connection:
        counts = {table.name: _count(connection, table) for table in tables()}
    return {name: n for name, n in counts.items() if n}


def copy_store(
    source: SqlStore,
    target: SqlStore,
    *,
    replace: bool = False,
    batch_rows: int = BATCH_ROWS,
    progress: Progress | None = None,
) -> Copied:
    """Copy every table of ``source`` into ``target`` (both opened, so at the same schema).

    Refuses a target that holds rows unless ``replace`` (then its rows are deleted first, in the
    same transaction as the copy). Raises `StoreError` when the target is not empty, a write is
    refused, or the counts differ at the end.
    """
    if batch_rows < 1:
        raise ValueError("batch_rows must be at least 1")
    copied = Copied()
    try:
        writer = target.engine.execution_options(**{WRITE_OPTION: True})
        with _snapshot(source) as reading, writer.begin() as writing:
            lock_for_write(writing)
            held = {t.name: n for t in tables() if (n := _count(writing, t))}
            if held and not replace:
                listed = ", ".join(f"{name} ({n:,} rows)" for name, n in held.items())
                raise StoreError(
                    f"{target.name} is not empty: {listed}; copy into an empty store, or pass "
                    "--replace to delete what it holds first"
                )
            if held:
                for table in reversed(tables()):  # children first
                    writing.execute(sqlalchemy.delete(table))
            for table in tables():
                total = _count(reading, table)
                done = 0
                for batch in _batches(reading, table, batch_rows):
                    try:
                        writing.execute(table.insert(), batch)
                    except sqlalchemy.exc.SQLAlchemyError as exc:
                        # Which table refused (a NUL in a SQLite text, say) is what to go and fix.
                        raise store_error(
                            exc, doing=f"copying {table.name} into", where=target.name
                        ) from exc
                    done += len(batch)
                    if progress is not None:
                        progress(table.name, done, total)
                if progress is not None and total == 0:
                    progress(table.name, 0, 0)
                copied.rows[table.name] = done
            copied.checked = _verify(reading, writing, copied.rows, target.name)
    except StoreError:
        raise
    except sqlalchemy.exc.SQLAlchemyError as exc:
        raise store_error(exc, doing="copying into", where=target.name) from exc
    return copied


class _snapshot:
    """A connection to ``store`` inside one read transaction that sees one moment of it."""

    def __init__(self, store: SqlStore) -> None:
        self.engine = store.engine
        self.connection: sqlalchemy.Connection | None = None

    def __enter__(self) -> sqlalchemy.Connection:
        connection = self.engine.connect()
        if self.engine.dialect.name == "postgresql":
            # READ COMMITTED (the default) takes a new snapshot per statement: tables read one
            # after another could disagree while writers run.
            connection = connection.execution_options(isolation_level="REPEATABLE READ")
        connection.begin()
        self.connection = connection
        return connection

    def __exit__(self, *exc: object) -> None:
        if self.connection is not None:
            self.connection.rollback()
            self.connection.close()


def _batches(
    connection: sqlalchemy.Connection, table: sqlalchemy.Table, size: int
) -> Iterator[list[dict[str, Any]]]:
    # Ordered by primary key, so the target is filled in the order its indexes like; streamed
    # (a server-side cursor on PostgreSQL), so a history larger than memory copies.
    query = sqlalchemy.select(table).order_by(*table.primary_key.columns)
    result = connection.execution_options(stream_results=True, yield_per=size).execute(query)
    for part in result.mappings().partitions(size):
        yield [dict(row) for row in part]


def _verify(
    reading: sqlalchemy.Connection,
    writing: sqlalchemy.Connection,
    rows: dict[str, int],
    where: str,
) -> dict[str, int]:
    checked: dict[str, int] = {}
    for table in tables():
        source_n, target_n = _count(reading, table), _count(writing, table)
        if not source_n == target_n == rows[table.name]:
            raise StoreError(
                f"copying into {where}: {table.name} has {target_n:,} rows there, "
                f"{source_n:,} in the source and {rows[table.name]:,} copied; nothing was kept"
            )
        checked[table.name] = target_n
    # The calls the rollups count, too (a sum no real history can take past 64 bits, unlike
    # the nano-dollars, whose SQLite SUM could overflow).
    total = sqlalchemy.select(
        sqlalchemy.func.coalesce(sqlalchemy.func.sum(schema.rollups.c.calls), 0)
    )
    source_sum, target_sum = int(reading.scalar(total) or 0), int(writing.scalar(total) or 0)
    if source_sum != target_sum:
        raise StoreError(
            f"copying into {where}: its rollups count {target_sum:,} calls, the source's "
            f"{source_sum:,}; nothing was kept"
        )
    checked["rollups.calls"] = target_sum
    return checked


def _count(connection: sqlalchemy.Connection, table: sqlalchemy.Table) -> int:
    return int(
        connection.scalar(sqlalchemy.select(sqlalchemy.func.count()).select_from(table)) or 0
    )
