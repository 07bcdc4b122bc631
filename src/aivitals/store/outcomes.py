"""`Outcome` records to ``outcomes`` rows and back.

>>> from aivitals.model import Outcome
>>> outcome = Outcome.of("0192f0c4-0000-7000-8000-000000000000", predicted="spam", actual="ham")
>>> row = outcome_row(outcome)
>>> row["kind"], row["predicted"], row["actual"], row["predicted_value"]
('class', 'spam', 'ham', None)
>>> readable_outcome(row).id == outcome.id  # the time kept to the millisecond
True
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aivitals.model import InvalidRecord, Outcome
from aivitals.store import bounds
from aivitals.store.rows import epoch_ms


def outcome_row(outcome: Outcome) -> dict[str, Any]:
    """The ``outcomes`` row of ``outcome``."""
    return {
        "id": outcome.id,
        "call_id": outcome.call_id,
        "name": outcome.name,
        "kind": outcome.kind,
        "predicted": outcome.predicted,
        "actual": outcome.actual,
        "probability": outcome.probability,
        "predicted_value": outcome.predicted_value,
        "actual_value": outcome.actual_value,
        "source": outcome.source,
        "created_ms": epoch_ms(outcome.created_at),
        "model": outcome.model,
        "feature": outcome.feature,
    }


def readable_outcome(row: Any) -> Outcome | None:
    """The stored outcome, or None when a read must skip it (a row the door would refuse)."""
    data = dict(row._mapping) if hasattr(row, "_mapping") else dict(row)
    created = data.pop("created_ms", None)
    if type(created) is not int or not bounds.MIN_STARTED_MS <= created <= bounds.MAX_STARTED_MS:
        return None
    try:
        # Validated as at the door; a row written by another tool may not pass.
        return Outcome(created_at=datetime.fromtimestamp(created / 1000, UTC), **data)
    except (InvalidRecord, TypeError, ValueError):
        return None
