"""`DailySpend`: what the judge's own calls cost today, against its daily cap.

The day is a calendar day in the configured time zone; a new day starts from zero. The cap is
checked when a call is admitted, against the priced judge calls settled so far, so it can be
passed by the requests already in flight when it is reached (at most ``max_concurrency``).

>>> from datetime import datetime, timedelta, UTC
>>> now = [datetime(2026, 3, 1, 23, 0, tzinfo=UTC)]
>>> spend = DailySpend(Decimal("0.01"), timezone="UTC", clock=lambda: now[0])
>>> spend.allows(), spend.add(Decimal("0.01")), spend.allows()
(True, Decimal('0.01'), False)
>>> now[0] += timedelta(hours=2)
>>> spend.allows(), spend.spent_usd
(True, Decimal('0'))
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import date, datetime, time
from decimal import Decimal
from zoneinfo import ZoneInfo

from aivitals.model import utc_now


class DailySpend:
    """Spend per calendar day in ``timezone`` against ``cap_usd`` (None: no cap). Thread-safe."""

    def __init__(
        self,
        cap_usd: Decimal | None,
        *,
        timezone: str = "UTC",
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.cap_usd = cap_usd
        self._zone = ZoneInfo(timezone)
        self._clock = clock
        self._lock = threading.Lock()
        self._day = self._today()
        self._spent = Decimal(0)

    def allows(self) -> bool:
        """Whether today's spend is still below the cap (always, without one)."""
        if self.cap_usd is None:
            return True
        with self._lock:
            self._roll()
            return self._spent < self.cap_usd

    def add(self, cost_usd: Decimal) -> Decimal:
        """Add a settled judge call's cost; returns today's spend."""
        with self._lock:
            self._roll()
            self._spent += cost_usd
            return self._spent

    def day_start(self) -> datetime:
        """When today began, in the budget's time zone."""
        with self._lock:
            self._roll()
            return datetime.combine(self._day, time(0), tzinfo=self._zone)

    def set_spent(self, spent_usd: Decimal) -> None:
        """Today's spend as read back from a store (a restart must not reset the day)."""
        with self._lock:
            self._roll()
            self._spent = spent_usd

    @property
    def spent_usd(self) -> Decimal:
        """Today's spend so far."""
        with self._lock:
            self._roll()
            return self._spent

    @property
    def exhausted(self) -> bool:
        """Whether the cap is reached for today."""
        return not self.allows()

    def _today(self) -> date:
        return self._clock().astimezone(self._zone).date()

    def _roll(self) -> None:
        today = self._today()
        if today != self._day:
            self._day = today
            self._spent = Decimal(0)
