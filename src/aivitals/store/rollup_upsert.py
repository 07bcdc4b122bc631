"""`RollupUpsert`: a batch's rollup rows added into a rollup table's stored rows, in a few statements.

The database adds the sums (``SET calls = rollups.calls + excluded.calls``: the same IEEE
additions Python made when it merged the rows itself, so the float sums come out to the bit);
the sketches, which SQL cannot merge, are read, merged here and written back whole.

On SQLite the stored rows a batch touches come back as one JSON text from one statement
(``json_group_array``), and the batch goes back as one multi-row upsert (`BulkInsert`): CPython's
sqlite3 releases the GIL at every row it steps to, and while the application thread is busy each
hand-over waits for the interpreter's switch interval, so a statement per row made the store
worker wait on the application for most of a batch's time. Only integers, text and hex travel
through that JSON, all exactly; floats never do (SQLite's JSON writes 15 digits), which is why the
float sums are added by the database rather than read back. The usual read carries no key and
no sum: each key goes in with its position in the batch, and what comes back is the position and
the two sketches in hex, with the largest stored value of each integer sum beside the JSON (the
sketches of every touched row are then merged in one numpy pass, `sketch.merge_many`). Should a
position come back unlike any asked for, or a sum come near its 64-bit limit, the exact way runs
instead: keys and integer sums read back too, every key checked (a stored key that did not come
back as it went in would have its sketch overwritten: then plain rows are read), and every row's
sums checked for overflow (`rollup.added_rows`).

On PostgreSQL the touched rows are read by one statement a chunk too: the keys go in as one
array per key column, unnested side by side and joined to the table (`_read_by_arrays`), and the
exact way above is the only way (sums and keys read back, every row checked).

>>> import sqlalchemy
>>> from aivitals.store import schema
>>> upsert = RollupUpsert(schema.rollups, ("granularity", "bucket_start", *schema.ROLLUP_KEYS),
...                       sqlalchemy.create_engine("sqlite://").dialect)
>>> "calls = (rollups.calls + excluded.calls)" in upsert.sql
True
"""

from __future__ import annotations

import functools
import itertools
import json
import operator
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect

from aivitals.store.bounds import INT64_MAX
from aivitals.store.bulk import BulkInsert, rung
from aivitals.store.rollup import INT_FIELDS, SKETCH_FIELDS, SUM_FIELDS, added_rows
from aivitals.store.sketch import merge_many

# At most 12 key columns and a position a key: far below SQLite's 32,766 parameters, and a
# batch of 500 calls (up to 1,000 rows of hours and days) is one statement.
_KEYS_PER_SELECT = 1000
_INT_FIELDS = INT_FIELDS


class RollupUpsert:
    """Fold rows of ``table`` (keyed by ``keys``, with `SUM_FIELDS` and `SKETCH_FIELDS`) into it."""

    def __init__(self, table: sa.Table, keys: Sequence[str], dialect: Dialect) -> None:
        self.table = table
        self.keys = tuple(keys)
        insert = postgresql.insert if dialect.name == "postgresql" else sqlite.insert
        statement = insert(table)
        update: dict[str, Any] = {
            name: table.c[name] + statement.excluded[name] for name in SUM_FIELDS
        }
        update.update({name: statement.excluded[name] for name in SKETCH_FIELDS})
        self._upsert = BulkInsert(
            # Every row a batch folds holds a call: a row of none is `rung` padding, which
            # must not rewrite the stored row it repeats (an index probe, not an update).
            statement.on_conflict_do_update(
                index_elements=list(self.keys),
                set_=update,
                where=statement.excluded.calls > sa.literal_column("0"),
            ),
            dialect,
            padding=SUM_FIELDS,
        )
        self.sql = self._upsert.sql
        self._pk = sa.tuple_(*(table.c[name] for name in self.keys))
        self._read = [table.c[name] for name in (*self.keys, *_INT_FIELDS, *SKETCH_FIELDS)]
        self._by_arrays = (
            _read_by_arrays(table, self.keys, self._read) if dialect.name == "postgresql" else None
        )
        self._as_json = dialect.name == "sqlite"
        # The keys go in as a VALUES list joined to the table, that list first (CROSS JOIN
        # fixes SQLite's join order): a primary-key lookup a key. SQLite ran the row-value
        # ``(k1, ...) IN (...)`` as a scan of the whole primary-key index, a batch's read
        # then growing with the table (5 ms a chunk of 500 keys at 4,000 stored rows).
        quote = dialect.identifier_preparer.quote
        picked = [f"t.{quote(name)}" for name in (*self.keys, *_INT_FIELDS)]
        picked += [f"hex(t.{quote(name)})" for name in SKETCH_FIELDS]
        on = " AND ".join(f"t.{quote(name)} = k.column{i}" for i, name in enumerate(self.keys, 1))
        # Only the schema's own names, quoted by the dialect, go into this text; values are bound.
        self._json_around = (
            f"SELECT json_group_array(json_array({', '.join(picked)})) FROM (VALUES ",  # noqa: S608
            "(" + ", ".join("?" * len(self.keys)) + ")",
            f") AS k CROSS JOIN {quote(table.name)} AS t ON {on}",
        )
        self._json_sql = functools.lru_cache(maxsize=16)(self._json_sql_of)
        position = f"k.column{len(self.keys) + 1}"
        hexes = ", ".join(f"hex(t.{quote(name)})" for name in SKETCH_FIELDS)
        highest = ", ".join(f"max(t.{quote(name)})" for name in _INT_FIELDS)
        self._sketches_around = (
            f"SELECT json_group_array(json_array({position}, {hexes})), {highest} "  # noqa: S608
            "FROM (VALUES ",
            "(" + ", ".join("?" * (len(self.keys) + 1)) + ")",
            self._json_around[2],
        )
        self._sketches_sql = functools.lru_cache(maxsize=16)(self._sketches_sql_of)
        self._int_sums = operator.itemgetter(*_INT_FIELDS)
        self._key_of = operator.itemgetter(*self.keys)  # a tuple: there are always two or more

    def fold(self, connection: sa.Connection, rows: Iterable[dict[str, Any]]) -> None:
        """Add ``rows`` (one per key, as `rollup.rollup_rows` makes them) into the table.

        Runs inside the writer's transaction, under its write lock. A row whose integer sums
        would outgrow their 64-bit columns leaves its stored row as it was (logged).
        """
        key_of = self._key_of
        batch = {key_of(row): row for row in rows}
        if not batch:
            return
        keys, news = list(batch), list(batch.values())
        found = self._stored_sketches(connection, keys, news) if self._as_json else None
        if found is not None:
            upserts = _with_sketches(news, *found)
        else:
            stored = self._stored(connection, keys)
            touched = [i for i, key in enumerate(keys) if key in stored]
            merged = added_rows([stored[keys[i]] for i in touched], [news[i] for i in touched])
            slots: list[dict[str, Any] | None] = list(news)
            for i, row in zip(touched, merged, strict=True):
                slots[i] = row
            upserts = [row for row in slots if row is not None]
        self._upsert.execute(connection, upserts)

    def _stored_sketches(
        self,
        connection: sa.Connection,
        keys: list[tuple[Any, ...]],
        news: list[dict[str, Any]],
    ) -> tuple[list[int], list[bytes], list[bytes]] | None:
        """The positions in ``keys`` of the stored keys and their stored sketches, in one
        statement a chunk (SQLite); None when the exact way must decide: a position came back
        unlike any asked for, or some row's integer sums could outgrow their columns.

        No key and no sum travels through the JSON, only positions and hex: the database
        adds the sums, and the largest stored sum of each column, against the batch's largest,
        shows that no row can outgrow its column (else `added_rows` checks row by row).
        """
        positions: list[int] = []
        hexed: list[str] = []
        highest: list[Sequence[Any]] = []
        for start in range(0, len(keys), _KEYS_PER_SELECT):
            chunk = _padded(keys[start : start + _KEYS_PER_SELECT])
            sql = self._sketches_sql(len(chunk))
            values = itertools.chain.from_iterable(
                (*key, at) for at, key in enumerate(chunk, start)
            )
            text, *most = connection.exec_driver_sql(sql, tuple(values)).one()
            found = json.loads(text or "[]")
            if found:
                highest.append(most)
            for row in found:
                positions.append(row[0])
                hexed += row[1:]
        if not positions:
            return [], [], []
        if (
            not all(type(at) is int for at in positions)
            or len(set(positions)) != len(positions)
            or min(positions) < 0
            or max(positions) >= len(keys)
        ):
            return None
        stored_most = map(max, zip(*highest, strict=True))
        new_most = map(max, zip(*map(self._int_sums, news), strict=True))
        for old, new in zip(stored_most, new_most, strict=True):
            if type(old) is not int or old + new > INT64_MAX:
                return None
        blobs = [bytes.fromhex(text) for text in hexed]
        return positions, blobs[0::2], blobs[1::2]

    def _stored(
        self, connection: sa.Connection, keys: list[tuple[Any, ...]]
    ) -> dict[tuple[Any, ...], dict[str, Any]]:
        """The stored keys among ``keys``: their integer sums and sketches, by key."""
        if self._as_json:
            found = self._stored_as_json(connection, keys)
            if found is not None:
                return found
        names = [column.name for column in self._read]
        stored: dict[tuple[Any, ...], dict[str, Any]] = {}
        for start in range(0, len(keys), _KEYS_PER_SELECT):
            chunk = keys[start : start + _KEYS_PER_SELECT]
            if self._by_arrays is not None:
                columns = zip(*chunk, strict=True)
                rows = connection.execute(
                    self._by_arrays, {f"k{i}": list(c) for i, c in enumerate(columns)}
                )
            else:  # SQLite, when the JSON way cannot decide: rare
                rows = connection.execute(sa.select(*self._read).where(self._pk.in_(chunk)))
            for row in rows:
                data = dict(zip(names, row, strict=True))
                stored[tuple(data[name] for name in self.keys)] = data
        return stored

    def _stored_as_json(
        self, connection: sa.Connection, keys: list[tuple[Any, ...]]
    ) -> dict[tuple[Any, ...], dict[str, Any]] | None:
        """`_stored` in one statement a chunk; None if a key came back unlike any asked for."""
        width = len(self.keys) + len(_INT_FIELDS)
        names = (*self.keys, *_INT_FIELDS, *SKETCH_FIELDS)
        asked = set(keys)
        stored: dict[tuple[Any, ...], dict[str, Any]] = {}
        for start in range(0, len(keys), _KEYS_PER_SELECT):
            chunk = _padded(keys[start : start + _KEYS_PER_SELECT])
            sql = self._json_sql(len(chunk))
            text = connection.exec_driver_sql(sql, tuple(itertools.chain(*chunk))).scalar()
            for found in json.loads(text or "[]"):
                key = tuple(found[: len(self.keys)])
                if key not in asked:
                    return None
                data = dict(zip(names[:width], found[:width], strict=True))
                for name, hexed in zip(SKETCH_FIELDS, found[width:], strict=True):
                    data[name] = bytes.fromhex(hexed)
                stored[key] = data
        return stored

    def _json_sql_of(self, keys: int) -> str:
        head, group, tail = self._json_around
        return head + ", ".join([group] * keys) + tail

    def _sketches_sql_of(self, keys: int) -> str:
        head, group, tail = self._sketches_around
        return head + ", ".join([group] * keys) + tail


def _read_by_arrays(
    table: sa.Table, keys: Sequence[str], read: list[sa.Column[Any]]
) -> sa.Select[Any]:
    """The stored rows of the keys given as one array per key column (PostgreSQL): the arrays
    unnested side by side and joined to the table on its primary key, a look-up a key.

    PostgreSQL ran the row-value ``(k1, ...) IN (...)`` over the whole table, each row against
    every key of the list: 380 ms a batch of 1,000 calls at 35,000 user rollup rows, three
    quarters of the store write, and growing with the table.
    """
    arrays = [
        sa.bindparam(
            f"k{i}",
            type_=postgresql.ARRAY(
                sa.BigInteger if isinstance(table.c[name].type, sa.Integer) else sa.Text
            ),
        )
        for i, name in enumerate(keys)
    ]
    names = (f"k{i}" for i in range(len(keys)))
    given = sa.func.unnest(*arrays).table_valued(*names).render_derived(name="k")
    on = sa.and_(*(table.c[name] == given.c[f"k{i}"] for i, name in enumerate(keys)))
    return sa.select(*read).select_from(given.join(table, on))


def _padded(keys: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """``keys`` padded to their `rung` (one statement text a rung) with keys no row has: a
    granularity of -1, which the writer never stores, so they match nothing."""
    size = rung(len(keys), _KEYS_PER_SELECT)
    if size == len(keys):
        return keys
    nothing = (-1, *keys[0][1:])
    return [*keys, *itertools.repeat(nothing, size - len(keys))]


def _with_sketches(
    news: list[dict[str, Any]],
    positions: list[int],
    latencies: list[bytes],
    ttfts: list[bytes],
) -> list[dict[str, Any]]:
    """``news`` with the stored sketches at ``positions`` merged into theirs."""
    upserts = list(news)
    merged = zip(
        merge_many(latencies, [news[at]["latency_sketch"] for at in positions]),
        merge_many(ttfts, [news[at]["ttft_sketch"] for at in positions]),
        strict=True,
    )
    for at, (latency, ttft) in zip(positions, merged, strict=True):
        upserts[at] = {**news[at], "latency_sketch": latency, "ttft_sketch": ttft}
    return upserts
