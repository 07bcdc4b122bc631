"""The `Store` protocol: what the store sink writes through and what queries read from.

A store keeps raw calls and scores, and folds every batch of calls into the ``rollups`` table
(`aivitals.store.rollup`) in the same transaction, so the rollups always agree with what was
written. Queries run SQLAlchemy Core against ``engine``, over the tables of `aivitals.store.schema`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol, runtime_checkable

import sqlalchemy

from aivitals.model import Call, Outcome, Score


@runtime_checkable
class Store(Protocol):
    """Where calls and scores are kept. Every method raises `StoreError` on failure."""

    engine: sqlalchemy.Engine
    """Queries run SQLAlchemy Core against this engine, over `aivitals.store.schema`'s tables."""

    def write(
        self, calls: Sequence[Call], scores: Sequence[Score], outcomes: Sequence[Outcome] = ()
    ) -> Sequence[Call]:
        """Store a batch atomically: every call, score and outcome, the rollups updated, or nothing.

        A call whose id is already stored is skipped (a retried batch is not counted twice).
        Returns the calls newly stored, the very objects given (a call given twice: the first),
        so the sinks after the store count a retried batch once too.
        """
        ...

    def delete_calls_before(self, cutoff: datetime, *, max_rows: int | None = None) -> int:
        """Delete raw calls that started before ``cutoff``, with their scores; keep rollups.

        Works in small transactions so writers are never held up for long; stops after about
        ``max_rows`` calls when given. Returns how many calls were deleted.
        """
        ...

    def ping(self) -> None:
        """Raise `StoreError` unless the database answers."""
        ...

    def close(self) -> None:
        """Release every connection. The store is not used afterwards."""
        ...
