"""The model and feature of stored calls, by id: for scores that name only their call.

A score sent to ``POST /api/v1/scores`` hours after its call, or to another server than the one
that recorded the call, carries only ``call_id``; its Prometheus series and live quality need the
call's model and feature, which the store has.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa

from aivitals.store.schema import calls

CallLabels = tuple[str, str | None]
"""A call's (model, feature)."""

_CHUNK = 500
"""Ids per query: well under SQLite's 32,766 bound parameters, and a small plan everywhere."""


def call_labels(connection: sa.Connection, ids: Iterable[str]) -> dict[str, CallLabels]:
    """``{id: (model, feature)}`` for the stored calls among ``ids``; unknown ids are left out."""
    wanted = sorted(set(ids))
    found: dict[str, CallLabels] = {}
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        query = sa.select(calls.c.id, calls.c.model, calls.c.feature).where(calls.c.id.in_(chunk))
        for call_id, model, feature in connection.execute(query):
            # A row an older version wrote may hold no text here; such a call lends no labels.
            if isinstance(model, str):
                found[call_id] = (model, feature if isinstance(feature, str) else None)
    return found
