"""Time windows: what ``--since`` reads, and the half-open UTC range every query takes.

>>> from datetime import UTC, datetime
>>> now = datetime(2026, 11, 3, 12, 30, tzinfo=UTC)
>>> parse_since("24h", now=now)
Window(start=datetime.datetime(2026, 11, 2, 12, 30, tzinfo=datetime.timezone.utc), end=datetime.datetime(2026, 11, 3, 12, 30, tzinfo=datetime.timezone.utc))
>>> parse_since("2026-11-01", now=now).start.isoformat()
'2026-11-01T00:00:00+00:00'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from aivitals.query.errors import QueryError
from aivitals.store.rows import epoch_ms

_UNITS = {
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "w": timedelta(weeks=1),
}
_DURATION = re.compile(r"(\d+)\s*([mhdw])")
_HINT = "use 30m, 24h, 7d, 2w or an ISO date like 2026-11-01"


@dataclass(frozen=True, slots=True)
class Window:
    """From ``start`` (inclusive) to ``end`` (exclusive), both timezone-aware, normalised to UTC."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise QueryError(None, "a window's start and end must be timezone-aware datetimes")
        if self.end < self.start:
            raise QueryError(None, f"the window ends ({self.end}) before it starts ({self.start})")
        object.__setattr__(self, "start", self.start.astimezone(UTC))
        object.__setattr__(self, "end", self.end.astimezone(UTC))

    @property
    def start_ms(self) -> int:
        return epoch_ms(self.start)

    @property
    def end_ms(self) -> int:
        return epoch_ms(self.end)


def parse_since(text: str, *, now: datetime) -> Window:
    """The window from ``text`` ago (``30m``, ``24h``, ``7d``, ``2w``) or an ISO date/time, to ``now``.

    An ISO date or time without an offset is read as UTC.
    """
    cleaned = text.strip().lower()
    match = _DURATION.fullmatch(cleaned)
    if match:
        # Python refuses to read integers of more than 4,300 digits (ValueError).
        digits = match.group(1)
        amount = int(digits) if len(digits.lstrip("0")) <= 20 else None
        if amount == 0:
            raise QueryError("since", f"{text!r} is an empty window; {_HINT}")
        try:
            if amount is None:
                raise OverflowError
            return Window(start=now - amount * _UNITS[match.group(2)], end=now)
        except OverflowError:
            raise QueryError("since", f"{_shown(text)} reaches too far back; {_HINT}") from None
    try:
        start = datetime.fromisoformat(text.strip())
    except ValueError:
        raise QueryError("since", f"cannot read {_shown(text)}; {_HINT}") from None
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    try:
        # Year 1 at +14:00 is still year 0 in UTC, which no datetime holds.
        start.astimezone(UTC)
    except OverflowError:
        raise QueryError("since", f"{text!r} is before the year 1 in UTC; {_HINT}") from None
    if start > now:
        raise QueryError("since", f"{text!r} is in the future; {_HINT}")
    return Window(start=start, end=now)


def _shown(text: str) -> str:
    """The text as a message quotes it: at most 40 characters of it."""
    return repr(text) if len(text) <= 40 else repr(text[:40]) + "..."
