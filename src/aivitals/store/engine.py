"""From a store target (a file path or a SQLAlchemy URL) to a configured engine.

Everything engine-specific lives here; the rest of the store is dialect-neutral SQLAlchemy Core.

SQLite is set up for several processes writing one file (an app's workers, the CLI, the server):

- ``journal_mode=WAL``: readers never block the writer and the writer never blocks readers.
- ``busy_timeout``: a writer waits up to `BUSY_TIMEOUT_S` for the write lock instead of failing.
- ``synchronous=NORMAL``: in WAL mode a commit survives an application crash; only a power loss
  can undo the last commits, an acceptable trade for telemetry against an fsync per batch.
- ``wal_autocheckpoint`` of `WAL_CHECKPOINT_PAGES` (about 40 MB of 4 KB pages, not SQLite's
  1,000): a checkpoint copies each page the WAL holds into the database file and syncs it, and a
  writer's commit that crosses the mark pays for it. The rollup rows are the same few pages
  rewritten by every batch, so a checkpoint ten times rarer copies them ten times less often;
  durable ingest gained 7 to 20% of wall time a call in process, most of it the syncs.
- Write transactions start with ``BEGIN IMMEDIATE``. A plain (deferred) ``BEGIN`` takes the write
  lock only at the first write; two transactions that both read first then cannot both upgrade,
  and SQLite fails one of them at once with "database is locked", busy timeout or not. Taking the
  lock up front makes concurrent writers queue instead. Reads keep a deferred ``BEGIN``, so they
  never wait for writers.

>>> split_target("./aivitals.db").drivername
'sqlite'
"""

from __future__ import annotations

import os
import sqlite3
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import sqlalchemy
from sqlalchemy import event
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import URL, make_url

from aivitals.store.bulk import padded_in
from aivitals.store.errors import StoreError

BUSY_TIMEOUT_S = 30.0
WAL_CHECKPOINT_PAGES = 10_000
"""Pages the WAL may hold before a commit checkpoints it (SQLite's default: 1,000)."""
CONNECT_TIMEOUT_S = 10
WRITE_OPTION = "aivitals_write"
"""Execution option that marks a connection's transactions as writes (``BEGIN IMMEDIATE``)."""

_BACKENDS = ("sqlite", "postgresql")
# One advisory-lock id for every aivitals writer on a PostgreSQL database (arbitrary, fixed).
_PG_WRITE_LOCK = 0x6169_7669  # "aivi"


def split_target(target: str | Path) -> URL:
    """The SQLAlchemy URL of a store target: a plain path means a SQLite file."""
    text = str(target)
    if "://" not in text:
        if text.strip() in ("", ":memory:"):
            raise StoreError(
                f"{text!r} is not a store file: an in-memory database vanishes with its "
                "connection; give a file path (a temporary file is fine)"
            )
        return URL.create("sqlite", database=str(Path(text).expanduser()))
    try:
        url = make_url(text)
    except sqlalchemy.exc.ArgumentError:
        raise StoreError(
            f"{text!r} is not a database URL; use a file path or a URL such as "
            "sqlite:///aivitals.db or postgresql+psycopg://user@host/aivitals"
        ) from None
    backend = url.get_backend_name()
    if backend not in _BACKENDS:
        raise StoreError(
            f"{display_name(url)}: the store runs on SQLite or PostgreSQL, not {backend}; "
            "use a file path or a postgresql+psycopg:// URL"
        )
    if backend == "sqlite" and (url.database or ":memory:") == ":memory:":
        raise StoreError(
            f"{text!r} is an in-memory database, which vanishes with its connection; "
            "give a file path (a temporary file is fine)"
        )
    return url


def display_name(url: URL) -> str:
    """How messages name the store: the file for SQLite, the URL without password otherwise."""
    if url.get_backend_name() == "sqlite" and url.database:
        return url.database
    return url.render_as_string(hide_password=True)


def create_store_engine(url: URL) -> sqlalchemy.Engine:
    """An engine for ``url``, with SQLite set up as described above; the file is made on first use."""
    if url.get_backend_name() == "sqlite":
        _make_parent(Path(str(url.database)))
    options: dict[str, Any] = {}
    if url.get_backend_name() == "sqlite":
        # The connection used last goes out next: each keeps its own cache of prepared
        # statements (see `bulk.rung`), and a pool handing them out in turn would warm them all.
        options["pool_use_lifo"] = True
    if url.get_backend_name() == "postgresql":
        # A dead server must fail a write in seconds, not hang the recorder's worker for the
        # length of a TCP timeout; and a pooled connection cut by a restart is replaced, not used.
        options["pool_pre_ping"] = True
        if "connect_timeout" not in url.query:
            options["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}
    try:
        engine = sqlalchemy.create_engine(url, **options)
    except ImportError as exc:
        raise StoreError(
            f"{display_name(url)}: its database driver is not installed ({exc}); "
            "for PostgreSQL run `pip install 'psycopg[binary]'`"
        ) from None
    except sqlalchemy.exc.NoSuchModuleError:
        raise StoreError(
            f"{display_name(url)}: SQLAlchemy knows no driver {url.drivername!r}; "
            "use sqlite:///PATH or postgresql+psycopg://user@host/aivitals"
        ) from None
    if engine.dialect.name == "sqlite":
        _set_up_sqlite(engine)
    _forget_connections_after_fork(engine)
    return engine


def lock_for_write(connection: sqlalchemy.Connection) -> None:
    """Serialise aivitals writers for the rest of this transaction.

    SQLite already did with ``BEGIN IMMEDIATE``. PostgreSQL's default isolation would let two
    writers read the same rollup row and both write back their own sum (one update lost), so
    writers take one transaction-scoped advisory lock; batches take milliseconds, so the queue
    stays short.
    """
    if connection.dialect.name == "postgresql":
        connection.execute(sqlalchemy.text(f"SELECT pg_advisory_xact_lock({_PG_WRITE_LOCK})"))


def among(
    connection: sqlalchemy.Connection,
    column: sqlalchemy.ColumnElement[str],
    values: Sequence[str],
) -> sqlalchemy.ColumnElement[bool]:
    """``column IN values``; on PostgreSQL as ``= ANY(array)``, one parameter.

    Through psycopg an IN list of 500 parameters cost about 0.5 s a batch, the array a few
    milliseconds (measured with benchmarks/bench_store_ingest.py --url): PostgreSQL took 7 times
    fewer calls a second than SQLite, most of it in this check for ids already stored.
    """
    if connection.dialect.name == "postgresql":
        array = ARRAY(sqlalchemy.String)
        return column == sqlalchemy.any_(sqlalchemy.bindparam("ids", list(values), type_=array))
    return column.in_(values)


_IDS_PER_CHECK = 500  # ids per IN (...): far below SQLite's 32,766 parameters a statement


def stored_ids(
    connection: sqlalchemy.Connection, column: sqlalchemy.Column[str], ids: Sequence[str]
) -> set[str]:
    """Which of ``ids`` ``column`` holds already (a primary key: the writer's check for a
    retried call or score).

    On SQLite a driver statement whose ``IN`` list is padded to its rung (`bulk.padded_in`:
    SQLAlchemy compiled an expanding IN anew for every batch, and exact sizes filled
    sqlite3's statement cache); elsewhere `among`. Only the schema's own names and placeholders
    go into the text; the ids are bound.
    """
    found: set[str] = set()
    quote = connection.dialect.identifier_preparer.quote
    name, table = quote(column.name), quote(column.table.name)
    for start in range(0, len(ids), _IDS_PER_CHECK):
        chunk = ids[start : start + _IDS_PER_CHECK]
        if connection.dialect.name == "sqlite":
            marks, values = padded_in(chunk)
            sql = f"SELECT {name} FROM {table} WHERE {name} IN ({marks})"  # noqa: S608
            found.update(connection.exec_driver_sql(sql, values).scalars())
        else:
            query = sqlalchemy.select(column).where(among(connection, column, chunk))
            found.update(connection.scalars(query))
    return found


def _make_parent(path: Path) -> None:
    # A missing directory is created, like the file itself: `--db data/aivitals.db` just works.
    if path.is_dir():
        raise StoreError(
            f"{path} is a directory; point at a file inside it, such as {path / 'aivitals.db'}"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(
            f"cannot create the directory {path.parent} ({exc.strerror}); "
            "create it yourself or choose another path"
        ) from None


def _set_up_sqlite(engine: sqlalchemy.Engine) -> None:
    # SQLAlchemy's documented recipe for owning SQLite transactions: turn off the sqlite3
    # module's own BEGIN handling, then emit BEGIN ourselves from the "begin" event.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            # The timeout first: switching to WAL needs a lock another process may hold.
            cursor.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute(f"PRAGMA wal_autocheckpoint = {WAL_CHECKPOINT_PAGES}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: sqlalchemy.Connection) -> None:
        writing = connection.get_execution_options().get(WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if writing else "BEGIN")


def _forget_connections_after_fork(engine: sqlalchemy.Engine) -> None:
    # A forked child (gunicorn-style workers) must not use the parent's pooled connections; a
    # SQLite handle shared across a fork can corrupt the file. Drop them without closing them,
    # as SQLAlchemy's pooling guide advises. A weak reference: forks must not keep engines alive.
    ref = weakref.ref(engine)

    def _after_fork() -> None:
        alive = ref()
        if alive is not None:
            alive.dispose(close=False)

    os.register_at_fork(after_in_child=_after_fork)


def store_error(exc: BaseException, *, doing: str, where: str) -> StoreError:
    """A one-line `StoreError` for a database failure while ``doing`` something to ``where``."""
    message = _first_line(exc)
    lowered = message.lower()
    if "file is not a database" in lowered or "malformed" in lowered:
        return StoreError(
            f"{where} is not a SQLite database (corrupted, or a file of another kind); "
            "point at an aivitals database or a new file"
        )
    if "database is locked" in lowered or "database is busy" in lowered:
        return StoreError(
            f"{doing} {where}: another process held the write lock for over "
            f"{BUSY_TIMEOUT_S:g} s; it is retried later",
            retryable=True,
        )
    transient = isinstance(
        exc, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError
    ) or (isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated)
    if transient or isinstance(exc, sqlalchemy.exc.TimeoutError | OSError):
        return StoreError(
            f"{doing} {where} failed ({message}); check that the database is reachable "
            "and its disk has room",
            retryable=True,
        )
    return StoreError(f"{doing} {where}: the database refused the data ({message})")


def _first_line(exc: BaseException) -> str:
    original = getattr(exc, "orig", None) or exc
    lines = str(original).strip().splitlines()
    return lines[0] if lines else type(original).__name__
