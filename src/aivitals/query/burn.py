"""Budget burn rate: how fast a budget is being spent against how fast it may be.

A budget of B USD a period of length P may be spent at B / P; the burn rate over a window of
length w is the spend in that window over ``B x w / P``. A rate of 1 spends exactly the budget by
the period's end; 2 spends it in half the period. As with SLO error budgets (Google's SRE
workbook, "multiwindow, multi-burn-rate alerts"), an alert looks at two windows, a long one that
says the burn is sustained and a short one that says it is still going on, and fires only when
both are above the factor: a spike that is over does not page, nor does a slow drift that the
short window alone would miss.

>>> burn_rate(spent_usd=2.0, budget_usd=720.0, window_s=3600, period_s=30 * 86400)
2.0
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from aivitals.query.filters import Filters
from aivitals.query.forecast import Period, period_bounds
from aivitals.query.queries import Queries
from aivitals.query.window import Window

GroupKey = tuple[tuple[str, str | None], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Burn:
    """One window's spend and its burn rate against the budget."""

    window_s: float
    spent_usd: float
    allowed_usd: float
    rate: float


def burn_rate(*, spent_usd: float, budget_usd: float, window_s: float, period_s: float) -> float:
    """Spend in a window over the budget's share of that window."""
    return spent_usd / (budget_usd * window_s / period_s)


def burn_rates(
    queries: Queries,
    now: datetime,
    *,
    budget_usd: float,
    period: Period = "month",
    windows: Sequence[timedelta] = (timedelta(hours=1), timedelta(hours=6)),
    filters: Filters | None = None,
    by: Sequence[str] = (),
    tz: str = "UTC",
) -> dict[GroupKey, list[Burn]]:
    """Each group's burn rate over each of ``windows`` ending at ``now`` (injected).

    The period's length is that of the local day or month holding ``now`` (a 31-day month
    allows less an hour than a 28-day one). Groups with no spend in any window are left out.
    """
    start, end = period_bounds(now, period, ZoneInfo(tz))
    period_s = (end.astimezone(UTC) - start.astimezone(UTC)).total_seconds()
    filters = filters or Filters()
    found: dict[GroupKey, list[Burn]] = {}
    for i, span in enumerate(windows):
        window = Window(start=now - span, end=now)
        if by:
            spent = {
                tuple((f, row.group.get(f)) for f in by): float(row.total_cost_usd)
                for row in queries.breakdown(window, filters, by, quality=False)
                if row.calls
            }
        else:
            summary = queries.summary(window, filters, quality=False)
            spent = {(): float(summary.total_cost_usd)} if summary.calls else {}
        for group in {*found, *spent}:
            found.setdefault(
                group,
                [
                    Burn(
                        window_s=w.total_seconds(),
                        spent_usd=0.0,
                        allowed_usd=budget_usd * w.total_seconds() / period_s,
                        rate=0.0,
                    )
                    for w in windows[:i]
                ],
            )
        for group, burns in found.items():
            usd = spent.get(group, 0.0)
            seconds = span.total_seconds()
            burns.append(
                Burn(
                    window_s=seconds,
                    spent_usd=usd,
                    allowed_usd=budget_usd * seconds / period_s,
                    rate=burn_rate(
                        spent_usd=usd, budget_usd=budget_usd, window_s=seconds, period_s=period_s
                    ),
                )
            )
    return found
