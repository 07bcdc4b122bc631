"""Budgets: spend per user, team or feature per calendar day or month, held under concurrency.

`BudgetLedger` is a live window of spend kept for budgets: it is an inline sink of the recorder,
so every priced call counts, whether it came through the gateway or the ingest API. It keeps one
running total per budgeted user, team or feature and per period; a period's totals are dropped
when the next one starts, so memory is bounded by the users, teams and features seen in the
current day or month. Periods are calendar days and months in the configured time zone, and
start again at local midnight (on the first of the month for monthly budgets).

Admission reserves: before a request goes upstream, `reserve` holds its worst-case cost against
every budget it falls under, and refuses it when spend plus what calls in flight hold plus this
worst case would pass a limit. The `Hold` is released when the call ends, once its real cost is
in the ledger, so concurrent requests can never spend more than the limit as long as each worst
case is honest (`aivitals.gateway.reserve` computes them).

On start the ledger is reloaded from the store (`reload`), so a restart does not forget today's
spend.

>>> from datetime import UTC, datetime
>>> from decimal import Decimal
>>> from aivitals.model import Call
>>> now = [datetime(2026, 11, 24, 23, 0, tzinfo=UTC)]
>>> ledger = BudgetLedger([Budget(scope="team", period="day", usd=Decimal("1"))], clock=lambda: now[0])
>>> hold = ledger.reserve(Decimal("0.6"), team="search")
>>> print(ledger.reserve(Decimal("0.6"), team="search").message)
team 'search' has spent $0.00 of its daily budget of $1.00 and calls in flight hold $0.60; this call could cost up to $0.60; it resets at 2026-11-25 00:00 UTC
>>> ledger.on_call(Call(provider="openai", model="m", latency_ms=1.0, team="search",
...                     cost_usd=Decimal("1"), started_at=now[0]))
>>> hold.release()
>>> print(ledger.check(team="search").message)
team 'search' has spent $1.00 of its daily budget of $1.00; it resets at 2026-11-25 00:00 UTC
>>> now[0] = datetime(2026, 11, 25, 0, 0, tzinfo=UTC)
>>> ledger.check(team="search") is None
True
"""

from __future__ import annotations

import logging
import math
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Literal
from zoneinfo import ZoneInfo

from aivitals.config import ConfigError, check_timezone
from aivitals.model import Call, Score, utc_now
from aivitals.query import Queries
from aivitals.query.filters import Filters
from aivitals.query.window import Window

log = logging.getLogger("aivitals.gateway")

Scope = Literal["user", "team", "feature"]
Period = Literal["day", "month"]
SCOPES: tuple[Scope, ...] = ("user", "team", "feature")
_ADJECTIVE = {"day": "daily", "month": "monthly"}
_HELD_RETRY_S = 1


@dataclass(frozen=True, slots=True)
class Budget:
    """A spending limit in USD for one ``scope`` per ``period``.

    ``value`` names one user, team or feature; None gives every one of them this budget each.
    """

    scope: Scope
    period: Period
    usd: Decimal
    value: str | None = None

    def __post_init__(self) -> None:
        if self.scope not in SCOPES:
            raise ConfigError(f"budget scope must be one of {', '.join(SCOPES)}: {self.scope!r}")
        if self.period not in _ADJECTIVE:
            raise ConfigError(f"budget period must be 'day' or 'month': {self.period!r}")
        if not self.usd > 0:
            raise ConfigError(f"budget usd must be above 0: {self.usd}")


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request is refused: the message for the client and when to try again.

    ``held_usd`` is what calls in flight hold under the budget, ``asked_usd`` the most this
    request could cost (``asked_basis`` says why, for the message).
    """

    budget: Budget
    value: str
    spent_usd: Decimal
    resets_at: datetime
    retry_after_s: int
    held_usd: Decimal = Decimal(0)
    asked_usd: Decimal = Decimal(0)
    asked_basis: str = ""

    @property
    def final(self) -> bool:
        """Whether nothing but the reset can let this request through: spend alone leaves no
        room for it, whatever the calls in flight turn out to cost."""
        return self.spent_usd + self.asked_usd > self.budget.usd or (
            self.spent_usd >= self.budget.usd
        )

    @property
    def message(self) -> str:
        said = (
            f"{self.budget.scope} {self.value!r} has spent {usd(self.spent_usd)} of its "
            f"{_ADJECTIVE[self.budget.period]} budget of {usd(self.budget.usd)}"
        )
        if self.spent_usd < self.budget.usd:
            if self.held_usd:
                said += f" and calls in flight hold {usd(self.held_usd)}"
            said += f"; this call could cost up to {usd(self.asked_usd)}"
            if self.asked_basis:
                said += f" ({self.asked_basis})"
        return f"{said}; it resets at {self.resets_at:%Y-%m-%d %H:%M} {self.resets_at.tzname()}"


_Key = tuple[str, str, str]  # (scope, value, period)


class Hold:
    """A reserve against budgets, given back exactly once.

    `release` gives it back when the call ends (after its real cost reached the ledger). A hold
    that is dropped unreleased (a request whose end was never seen: a stream that never started,
    a task that died) is given back when it is garbage collected, so a reserve never leaks.
    """

    __slots__ = ("__weakref__", "_finalizer", "_ledger", "usd")

    def __init__(
        self, ledger: BudgetLedger, entries: tuple[tuple[_Key, datetime], ...], usd: Decimal
    ) -> None:
        self.usd = usd
        self._ledger = ledger
        # The callback only queues the return (no lock): the collector may run it on a thread
        # that is inside the ledger's lock already.
        self._finalizer = weakref.finalize(self, ledger._returned.append, (entries, usd))
        self._finalizer.atexit = False

    def release(self) -> None:
        """Give the reserve back (idempotent)."""
        self._finalizer()
        self._ledger._take_back()

    @property
    def released(self) -> bool:
        return not self._finalizer.alive


def usd(amount: Decimal) -> str:
    """Dollars for people: cents from $1 up, up to six decimals below (never "$0.00" for $0.0018).

    >>> usd(Decimal("50")), usd(Decimal("0.0018")), usd(Decimal("0.1"))
    ('$50.00', '$0.0018', '$0.10')
    """
    if abs(amount) >= 1:
        return f"${amount:,.2f}"
    text = f"{amount:.6f}".rstrip("0")
    decimals = len(text.split(".")[1])
    return f"${amount:.{max(2, decimals)}f}"


class BudgetLedger:
    """Spend per budgeted scope and period, from the calls the recorder sees. Thread-safe.

    ``clock`` returns the current time (aware); tests inject one to cross a day or month.
    """

    name = "budgets"

    def __init__(
        self,
        budgets: Sequence[Budget],
        *,
        timezone: str = "UTC",
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.budgets = tuple(budgets)
        self._tz: ZoneInfo = check_timezone(timezone, setting="budget timezone")
        self._clock = clock
        self._lock = threading.Lock()
        # (scope, value, period) -> the period's start and its spend so far; and what the
        # calls in flight hold (their worst cases), the same way.
        self._spent: dict[_Key, tuple[datetime, Decimal]] = {}
        self._held: dict[_Key, tuple[datetime, Decimal]] = {}
        # Holds given back, waiting to be subtracted under the lock (see Hold).
        self._returned: deque[tuple[tuple[tuple[_Key, datetime], ...], Decimal]] = deque()
        self._watched = {(b.scope, b.period) for b in self.budgets}
        self._bounds: dict[str, tuple[datetime, datetime]] = {}
        # The current period's start when a call was last counted, per period: _forget_ended.
        self._newest: dict[str, datetime] = {}

    def period_bounds(self, period: Period, at: datetime) -> tuple[datetime, datetime]:
        """The local calendar ``period`` holding ``at``: its start and the next one's."""
        # Every recorded call asks (this is an inline sink): almost all fall in the period
        # asked last, so keep it rather than redo the zone arithmetic.
        held = self._bounds.get(period)
        if held is not None and held[0] <= at < held[1]:
            return held
        bounds = self._compute_bounds(period, at)
        self._bounds[period] = bounds
        return bounds

    def _compute_bounds(self, period: Period, at: datetime) -> tuple[datetime, datetime]:
        local = at.astimezone(self._tz)
        # Arithmetic on an aware datetime is wall-clock arithmetic, and ZoneInfo works out the
        # offset of the result: a day with a DST change is still midnight to midnight.
        if period == "day":
            start = local.replace(hour=0, minute=0, second=0, microsecond=0)
            return start, start + timedelta(days=1)
        start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        return start, (start + timedelta(days=32)).replace(day=1)

    def on_call(self, call: Call) -> None:
        if not call.cost_usd or not self._watched:
            return
        for scope, period in self._watched:
            value = getattr(call, scope)
            if value is None:
                continue
            start, _ = self.period_bounds(period, call.started_at)
            self._add((scope, value, period), period, start, call.cost_usd)

    def on_score(self, score: Score) -> None:
        """Scores cost nothing."""

    @property
    def spend_entries(self) -> int:
        """How many (scope, value, period) running totals are held."""
        with self._lock:
            return len(self._spent)

    def _add(
        self, key: tuple[str, str, str], period: Period, start: datetime, usd: Decimal
    ) -> None:
        with self._lock:
            self._forget_ended(period)
            held = self._spent.get(key)
            if held is None or held[0] < start:
                self._spent[key] = (start, usd)
            elif held[0] == start:
                self._spent[key] = (start, held[1] + usd)
            # A call from an earlier period (a late report) no longer counts.

    def _forget_ended(self, period: Period) -> None:
        # Under the lock. A total of an ended day (or month) never counts again, yet it stayed
        # until its user, team or feature spent again: one entry per value ever seen. The first
        # call counted in a new period drops the totals of earlier ones, so what is kept is the
        # values with spend in the current period. The period is the ledger's clock's, not the
        # call's: a call stamped in the future must not end today for everyone.
        start, _ = self.period_bounds(period, self._clock())
        newest = self._newest.get(period)
        if newest is not None and start <= newest:
            return
        self._newest[period] = start
        for key in [k for k, (begun, _) in self._spent.items() if k[2] == period and begun < start]:
            del self._spent[key]

    def spent(
        self, scope: Scope, value: str, period: Period, *, at: datetime | None = None
    ) -> Decimal:
        """Spend so far in the ``period`` holding ``at`` (default now) by this user, team or
        feature."""
        start, _ = self.period_bounds(period, self._clock() if at is None else at)
        with self._lock:
            held = self._spent.get((scope, value, period))
        return held[1] if held is not None and held[0] == start else Decimal(0)

    def held(
        self, scope: Scope, value: str, period: Period, *, at: datetime | None = None
    ) -> Decimal:
        """What calls in flight hold (their worst cases) under this user, team or feature."""
        start, _ = self.period_bounds(period, self._clock() if at is None else at)
        with self._lock:
            self._subtract_returned()
            held = self._held.get((scope, value, period))
        return held[1] if held is not None and held[0] == start else Decimal(0)

    def covering(
        self, *, user: str | None, team: str | None, feature: str | None
    ) -> Iterator[tuple[Budget, str]]:
        """The budgets a request for this user, team or feature falls under, each with the
        value (which user, team or feature) it is held against."""
        values = {"user": user, "team": team, "feature": feature}
        for budget in self.budgets:
            value = values[budget.scope]
            if value is not None and (budget.value is None or budget.value == value):
                yield budget, value

    def applies(
        self, *, user: str | None = None, team: str | None = None, feature: str | None = None
    ) -> bool:
        """Whether any budget covers a request for this user, team or feature."""
        return next(self.covering(user=user, team=team, feature=feature), None) is not None

    def check(
        self, *, user: str | None = None, team: str | None = None, feature: str | None = None
    ) -> Refusal | None:
        """The first budget whose spend has reached its limit, or None: a question about
        spend only (admission asks `reserve`)."""
        now = self._clock()
        for budget, value in self.covering(user=user, team=team, feature=feature):
            spent = self.spent(budget.scope, value, budget.period, at=now)
            if spent >= budget.usd:
                return self._refusal(budget, value, now, spent=spent)
        return None

    def reserve(
        self,
        usd: Decimal,
        *,
        user: str | None = None,
        team: str | None = None,
        feature: str | None = None,
        basis: str = "",
    ) -> Hold | Refusal:
        """Hold ``usd`` (a request's worst-case cost) against every budget the request falls
        under, or say which budget it does not fit: spend plus what calls in flight hold plus
        ``usd`` would pass the limit. ``basis`` says where ``usd`` came from, for the message.

        Checked and held under one lock, so two requests can never both take the same room.
        """
        now = self._clock()
        entries: dict[_Key, datetime] = {}
        with self._lock:
            self._subtract_returned()
            for budget, value in self.covering(user=user, team=team, feature=feature):
                key: _Key = (budget.scope, value, budget.period)
                start, _ = self.period_bounds(budget.period, now)
                spent = _current(self._spent.get(key), start)
                held = _current(self._held.get(key), start)
                if spent >= budget.usd or spent + held + usd > budget.usd:
                    return self._refusal(
                        budget, value, now, spent=spent, held=held, asked=usd, basis=basis
                    )
                entries[key] = start
            for key, start in entries.items():
                self._held[key] = (start, _current(self._held.get(key), start) + usd)
        return Hold(self, tuple(entries.items()), usd)

    async def reserve_async(
        self,
        usd: Decimal,
        *,
        user: str | None = None,
        team: str | None = None,
        feature: str | None = None,
        basis: str = "",
    ) -> Hold | Refusal:
        """`reserve` as the gateway asks it: a shared ledger (Redis) answers over the network."""
        return self.reserve(usd, user=user, team=team, feature=feature, basis=basis)

    def _refusal(
        self,
        budget: Budget,
        value: str,
        now: datetime,
        *,
        spent: Decimal,
        held: Decimal = Decimal(0),
        asked: Decimal = Decimal(0),
        basis: str = "",
    ) -> Refusal:
        _, resets = self.period_bounds(budget.period, now)
        refusal = Refusal(
            budget=budget,
            value=value,
            spent_usd=spent,
            resets_at=resets,
            retry_after_s=0,
            held_usd=held,
            asked_usd=asked,
            asked_basis=basis,
        )
        # Refused for what calls in flight hold: room may come back when they end (for less
        # than their worst case), so a retry soon can work. Otherwise only the reset helps.
        wait = (resets - now).total_seconds() if refusal.final else _HELD_RETRY_S
        return replace(refusal, retry_after_s=max(1, math.ceil(wait)))

    def _take_back(self) -> None:
        if self._returned:
            with self._lock:
                self._subtract_returned()

    def _subtract_returned(self) -> None:
        # Under the lock. A hold from a period that has ended no longer counts: nothing to give.
        while self._returned:
            entries, usd = self._returned.popleft()
            for key, start in entries:
                held = self._held.get(key)
                if held is None or held[0] != start:
                    continue
                rest = held[1] - usd
                if rest > 0:
                    self._held[key] = (start, rest)
                else:
                    del self._held[key]

    def reload(self, queries: Queries) -> int:
        """Read the current periods' spend back from the store; returns the totals loaded.

        Called once at start, before any request: it replaces what the ledger holds.
        """
        now = self._clock()
        loaded: dict[tuple[str, str, str], tuple[datetime, Decimal]] = {}
        for scope, period in sorted(self._watched):
            start, _ = self.period_bounds(period, now)
            window = Window(start.astimezone(UTC), now.astimezone(UTC) + timedelta(seconds=1))
            named = {b.value for b in self.budgets if (b.scope, b.period) == (scope, period)}
            if None in named:
                rows = queries.top(window, by=scope, limit=1_000_000)
                totals = {row.value: row.cost_usd for row in rows if row.value is not None}
            else:
                totals = {
                    value: queries.summary(
                        window, Filters(**{scope: value}), quality=False
                    ).total_cost_usd
                    for value in named
                    if value is not None
                }
            for value, usd in totals.items():
                if usd:
                    loaded[(scope, value, period)] = (start, Decimal(usd))
        with self._lock:
            self._spent = loaded
        log.info("aivitals: budgets reloaded %d running totals from the store", len(loaded))
        return len(loaded)


def _current(held: tuple[datetime, Decimal] | None, start: datetime) -> Decimal:
    """The amount of a running total if it belongs to the period starting at ``start``."""
    return held[1] if held is not None and held[0] == start else Decimal(0)
