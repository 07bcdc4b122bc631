"""`SqlStore`: the store on SQLite (embedded default) or PostgreSQL, through SQLAlchemy Core.

>>> import tempfile, pathlib
>>> from aivitals.model import Call
>>> folder = tempfile.TemporaryDirectory()
>>> store = SqlStore.open(pathlib.Path(folder.name) / "aivitals.db")
>>> [call.model for call in store.write([Call(provider="openai", model="gpt-4o-mini", latency_ms=250.0)], [])]
['gpt-4o-mini']
>>> with store.engine.connect() as connection:
...     connection.scalar(sqlalchemy.select(sqlalchemy.func.count()).select_from(schema.calls))
1
>>> store.close()
>>> folder.cleanup()
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Self

import sqlalchemy
from sqlalchemy.dialects import postgresql, sqlite

from aivitals.model import Call, Outcome, Score
from aivitals.store import (
    migrations,
    model_rollup,
    schema,
    score_rollup,
    user_rollup,
    user_score_rollup,
)
from aivitals.store.bulk import BulkInsert
from aivitals.store.engine import (
    WRITE_OPTION,
    create_store_engine,
    display_name,
    lock_for_write,
    split_target,
    store_error,
    stored_ids,
)
from aivitals.store.errors import StoreError
from aivitals.store.outcomes import outcome_row
from aivitals.store.rollup import Figures, call_figures, rollup_rows
from aivitals.store.rollup_upsert import RollupUpsert
from aivitals.store.rows import CALL_COLUMNS, call_values, epoch_ms, score_row, to_nusd

# Bound every IN (...) list: SQLite refuses statements with more than 32,766 parameters.
_DELETE_CHUNK = 1000
_ROLLUP_PK = ("granularity", "bucket_start", *schema.ROLLUP_KEYS)


class SqlStore:
    """Calls, scores and rollups in one SQL database. Thread-safe; several processes may share it.

    Build it with `SqlStore.open`. ``name`` is how messages refer to the database (the file path,
    or the URL without its password).
    """

    def __init__(self, engine: sqlalchemy.Engine, *, name: str) -> None:
        self.engine = engine
        self.name = name
        # Same pool, but transactions begin with BEGIN IMMEDIATE on SQLite (see engine.py).
        self._writer = engine.execution_options(**{WRITE_OPTION: True})
        insert = _insert_for(engine.dialect.name)
        self._insert_calls = BulkInsert(
            insert(schema.calls).on_conflict_do_nothing(),
            engine.dialect,
            columns=CALL_COLUMNS,
            padding=(),
        )
        # The evaluators give every call five scores: through SQLAlchemy's bind processing
        # they took more of a gateway's store writes than its calls did (py-spy: 16% of the
        # samples against 10%); this way a score costs about 14% less to write.
        self._insert_scores = BulkInsert(
            insert(schema.scores).on_conflict_do_nothing(), engine.dialect, padding=()
        )
        self._insert_outcomes = insert(schema.outcomes).on_conflict_do_nothing()
        self._rollups = RollupUpsert(schema.rollups, _ROLLUP_PK, engine.dialect)

    @classmethod
    def open(cls, target: str | Path) -> Self:
        """Open (creating or upgrading as needed) the store at ``target``.

        ``target`` is a file path (SQLite; the file and its directory are created on first use)
        or a SQLAlchemy URL such as ``sqlite:///aivitals.db`` or
        ``postgresql+psycopg://user@host/aivitals``. Raises `StoreError` when the database is
        not a store, was written by a newer aivitals, or cannot be reached.
        """
        url = split_target(target)
        name = display_name(url)
        engine = create_store_engine(url)
        try:
            _prepare(engine, name)
        except StoreError:
            engine.dispose()
            raise
        except Exception as exc:
            engine.dispose()
            raise store_error(exc, doing="opening", where=name) from exc
        return cls(engine, name=name)

    def write(
        self, calls: Sequence[Call], scores: Sequence[Score], outcomes: Sequence[Outcome] = ()
    ) -> list[Call]:
        """Store a batch in one transaction: calls, scores, outcomes, the new calls' rollups and
        the new scores' rollups (`score_rollup`).

        Calls already stored (same id: a retried batch) are skipped and not counted again.
        Returns the calls newly stored (see `Store.write`).
        """
        inserted: list[Call] = []
        if not calls and not scores and not outcomes:
            return inserted
        try:
            with self._writer.begin() as connection:
                lock_for_write(connection)
                if calls:
                    inserted = self._new_calls(connection, calls)
                    if inserted:
                        ids = [c.id for c in inserted]
                        # Before this batch's scores go in, so none of them is folded twice;
                        # read once for the score rollups and the users'.
                        waiting = score_rollup.waiting_scores(connection, ids)
                        self._insert_and_fold(connection, inserted, waiting)
                        score_rollup.fold_waiting(connection, ids, waiting=waiting)
                if scores:
                    kept = score_rollup.new_scores(connection, scores)
                    self._insert_scores.execute(connection, [score_row(s) for s in scores])
                    # One read of the scored calls for both folds.
                    keys = score_rollup.call_keys(
                        connection, {s.call_id for s in kept}, score_rollup.SCORED_CALL_KEYS
                    )
                    score_rollup.fold_scores(connection, kept, keys)
                    user_score_rollup.fold_scores(connection, kept, keys)  # schema 8
                if outcomes:
                    connection.execute(self._insert_outcomes, [outcome_row(o) for o in outcomes])
        except Exception as exc:
            raise store_error(exc, doing="writing to", where=self.name) from exc
        return inserted

    def delete_calls_before(self, cutoff: datetime, *, max_rows: int | None = None) -> int:
        """Delete raw calls started before ``cutoff``, their scores and outcomes; rollups stay.

        Scores created before ``cutoff`` whose call was never stored go too. Each chunk of
        `_DELETE_CHUNK` calls is its own short transaction, so writers wait milliseconds, not
        the whole clean-up; ``max_rows`` stops after about that many calls.
        """
        cutoff_ms = epoch_ms(cutoff)
        deleted = 0
        try:
            while max_rows is None or deleted < max_rows:
                limit = (
                    _DELETE_CHUNK if max_rows is None else min(_DELETE_CHUNK, max_rows - deleted)
                )
                with self._writer.begin() as connection:
                    lock_for_write(connection)
                    ids = connection.scalars(
                        sqlalchemy.select(schema.calls.c.id)
                        .where(schema.calls.c.started_ms < cutoff_ms)
                        .limit(limit)
                    ).all()
                    if ids:
                        connection.execute(
                            sqlalchemy.delete(schema.scores).where(schema.scores.c.call_id.in_(ids))
                        )
                        connection.execute(
                            sqlalchemy.delete(schema.outcomes).where(
                                schema.outcomes.c.call_id.in_(ids)
                            )
                        )
                        connection.execute(
                            sqlalchemy.delete(schema.calls).where(schema.calls.c.id.in_(ids))
                        )
                deleted += len(ids)
                if len(ids) < limit:
                    self._delete_old_scores(cutoff_ms)
                    break
        except Exception as exc:
            raise store_error(exc, doing="deleting old calls from", where=self.name) from exc
        return deleted

    def ping(self) -> None:
        """Raise `StoreError` unless the database answers a trivial query."""
        try:
            with self.engine.connect() as connection:
                connection.execute(sqlalchemy.select(1))
        except Exception as exc:
            raise store_error(exc, doing="reaching", where=self.name) from exc

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    @property
    def pending_dir(self) -> Path:
        """Where calls that could not be stored at a shutdown wait for the next start.

        Beside the file for SQLite (``aivitals.db.pending/``), so the two move together; for
        PostgreSQL, in the user's cache, one folder per database.
        """
        if self.engine.dialect.name == "sqlite" and self.engine.url.database:
            database = Path(self.engine.url.database)
            return database.with_name(f"{database.name}.pending")
        digest = hashlib.sha256(self.name.encode()).hexdigest()[:16]
        cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        return Path(cache) / "aivitals" / "pending" / digest

    def __repr__(self) -> str:
        return f"SqlStore({self.name!r})"

    def _new_calls(self, connection: sqlalchemy.Connection, calls: Sequence[Call]) -> list[Call]:
        # The writer lock is held (BEGIN IMMEDIATE, or the advisory lock on PostgreSQL), so the
        # ids found here cannot change before the insert: the new calls are exactly the rest.
        by_id: dict[str, Call] = {}
        for call in calls:
            by_id.setdefault(call.id, call)
        stored = stored_ids(connection, schema.calls.c.id, list(by_id))
        return [call for call_id, call in by_id.items() if call_id not in stored]

    def _insert_and_fold(
        self, connection: sqlalchemy.Connection, calls: list[Call], waiting: list[Any]
    ) -> None:
        # Each cost in nano-dollars once, for the row and the rollups both.
        costs = [None if call.cost_usd is None else to_nusd(call.cost_usd) for call in calls]
        self._insert_calls.execute_values(
            connection, [call_values(call, cost) for call, cost in zip(calls, costs, strict=True)]
        )
        # Each call's share of a rollup row once, for the three kinds of rollup.
        figures = call_figures(calls, costs)
        self._fold_rollups(connection, calls, figures)
        # Schema 8, read side; schema 9 likewise.
        user_rollup.fold(connection, calls, costs, waiting=waiting, figures=figures)
        model_rollup.fold(connection, calls, costs, figures=figures)

    def _fold_rollups(
        self,
        connection: sqlalchemy.Connection,
        calls: list[Call],
        figures: list[Figures | None],
    ) -> None:
        self._rollups.fold(connection, rollup_rows(calls, figures=figures))

    def _delete_old_scores(self, cutoff_ms: int) -> None:
        created = schema.scores.c.created_ms
        while True:
            with self._writer.begin() as connection:
                lock_for_write(connection)
                ids = connection.scalars(
                    sqlalchemy.select(schema.scores.c.id)
                    .where(created < cutoff_ms)
                    .limit(_DELETE_CHUNK)
                ).all()
                if ids:
                    connection.execute(
                        sqlalchemy.delete(schema.scores).where(schema.scores.c.id.in_(ids))
                    )
            if len(ids) < _DELETE_CHUNK:
                return


def _prepare(engine: sqlalchemy.Engine, name: str) -> None:
    # Most opens find an up-to-date store: check that under a plain read transaction, so opening
    # never queues behind writers. Only creation and upgrades take the write lock, and re-check
    # under it (another process may have just done the work).
    latest = migrations.latest_version(migrations.STEPS)
    with engine.connect() as connection:
        version = migrations.read_version(connection, where=name)
    if version is not None:
        migrations.check_not_newer(version, latest, where=name)
        if version == latest:
            return
    with engine.execution_options(**{WRITE_OPTION: True}).begin() as connection:
        lock_for_write(connection)
        migrations.prepare_schema(connection, where=name)


def _insert_for(dialect: str) -> Callable[[sqlalchemy.Table], Any]:
    if dialect == "sqlite":
        return sqlite.insert
    if dialect == "postgresql":
        return postgresql.insert
    raise StoreError(f"the store runs on SQLite or PostgreSQL, not {dialect}")
