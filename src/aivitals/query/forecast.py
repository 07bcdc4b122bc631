"""Spend forecasts: the day's or the month's end projected from the spend so far and its rhythm.

``projected = spent so far + the expected spend of every hour left``, each hour expected at the
mean spend of the same local hour (of the same weekday, once two weeks of history give every
weekday twice; of any day before that) over the past `Settings.days` complete days.

The interval is a prediction interval for the sum of the days left: complete past days vary
about their expected total (the mean of their weekday, or of all days) with a variance
``s^2 = sum(residual^2) / (n - k)`` (k the number of means), and the spend left is
``sum_j f_j`` days, f_j the share of day j's expected spend still to come. Its variance is
``s^2 (sum_j f_j + sum_class (sum_{j in class} f_j)^2 / n_class)``: the days' own variation
plus the uncertainty of the means they are expected at. The bounds are the projection
``+- t(n - k) x sd``, the t quantile for the nominal `Settings.coverage` (90% by default), the
lower one never below the spend so far. Days are taken as independent; tests check the coverage
on generated months (docs/drift.md gives the figure).

Fewer than `Settings.min_days` complete days of history: "not enough data", no projection.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from aivitals.query.filters import Filters
from aivitals.query.queries import Queries
from aivitals.query.window import Window

Period = Literal["day", "month"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """How much history the rhythm is read from and the interval's nominal coverage."""

    days: int = 28
    min_days: int = 3
    weekly_days: int = 14
    coverage: float = 0.9


@dataclass(frozen=True, slots=True, kw_only=True)
class Forecast:
    """A period's spend so far and projected at its end, with the interval's bounds."""

    period: Period
    start: datetime
    end: datetime
    spent_usd: float
    projected_usd: float | None
    low_usd: float | None
    high_usd: float | None
    coverage: float
    method: Literal["hour-of-week", "hour-of-day"] | None
    history_days: int
    verdict: Literal["ok", "not enough data"]


def period_bounds(now: datetime, period: Period, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The local day or month holding ``now``: its start and end (aware, in ``zone``)."""
    local = now.astimezone(zone)
    if period == "day":
        start = datetime.combine(local.date(), time(), zone)
        return start, datetime.combine(local.date() + timedelta(days=1), time(), zone)
    first = local.date().replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    return datetime.combine(first, time(), zone), datetime.combine(following, time(), zone)


def project(
    hours: Sequence[tuple[datetime, float]],
    now: datetime,
    period: Period,
    *,
    tz: str = "UTC",
    settings: Settings | None = None,
) -> Forecast:
    """The forecast from local hourly spend ``hours`` (start in ``tz``, USD), oldest first.

    ``hours`` must reach from `Settings.days` days before today to ``now``; the hour holding
    ``now`` counts as far as it has gone.
    """
    settings = settings or Settings()
    zone = ZoneInfo(tz)
    start, end = period_bounds(now, period, zone)
    today = datetime.combine(now.astimezone(zone).date(), time(), zone)
    spent = sum(usd for at, usd in hours if start <= at < now)
    first = next((at for at, usd in hours if usd > 0), None)
    # Complete local days since the first spend (before it the spender did not exist).
    days: dict[date, dict[int, float]] = defaultdict(dict)
    oldest = (today - timedelta(days=settings.days)).date()
    begun = first.astimezone(zone).date() if first is not None else today.date()
    for at, usd in hours:
        local = at.astimezone(zone)
        if max(oldest, begun) <= local.date() < today.date():
            days[local.date()][local.hour] = days[local.date()].get(local.hour, 0.0) + usd
    n = len(days)
    if n < max(settings.min_days, 2):
        return Forecast(
            period=period,
            start=start,
            end=end,
            spent_usd=spent,
            projected_usd=None,
            low_usd=None,
            high_usd=None,
            coverage=settings.coverage,
            method=None,
            history_days=n,
            verdict="not enough data",
        )
    weekly = n >= settings.weekly_days and len({d.weekday() for d in days}) == 7

    def kind(day: date) -> int:
        return day.weekday() if weekly else 0

    per_class: dict[int, list[date]] = defaultdict(list)
    for day in days:
        per_class[kind(day)].append(day)
    profile = {
        (c, h): sum(days[d].get(h, 0.0) for d in members) / len(members)
        for c, members in per_class.items()
        for h in range(24)
    }
    totals = {c: sum(profile[(c, h)] for h in range(24)) for c in per_class}
    residuals = [sum(days[d].values()) - totals[kind(d)] for d in days]
    dof = n - len(per_class)
    variance = sum(r * r for r in residuals) / dof if dof > 0 else 0.0

    # The hours left: the rest of the current hour, then every local hour to the period's end.
    left = 0.0
    share: dict[date, float] = defaultdict(float)
    hour = now.astimezone(zone).replace(minute=0, second=0, microsecond=0)
    while hour < end:
        following = (hour.astimezone(UTC) + timedelta(hours=1)).astimezone(zone)
        part = (following - max(hour, now)).total_seconds() / 3600 if hour < now else 1.0
        day = hour.date()
        expected = profile.get((kind(day), hour.hour), 0.0) * part
        left += expected
        if totals.get(kind(day), 0.0) > 0:
            share[day] += expected / totals[kind(day)]
        hour = following
    by_class: dict[int, float] = defaultdict(float)
    for day, f in share.items():
        by_class[kind(day)] += f
    spread = variance * (
        sum(share.values())
        + sum(f * f / len(per_class.get(c, [None])) for c, f in by_class.items())
    )
    from scipy import stats  # noqa: PLC0415  # a second to import; only when forecasting

    t = float(stats.t.ppf((1 + settings.coverage) / 2, max(dof, 1)))
    half = t * math.sqrt(spread)
    return Forecast(
        period=period,
        start=start,
        end=end,
        spent_usd=spent,
        projected_usd=spent + left,
        low_usd=spent + max(0.0, left - half),
        high_usd=spent + left + half,
        coverage=settings.coverage,
        method="hour-of-week" if weekly else "hour-of-day",
        history_days=n,
        verdict="ok",
    )


def forecast_spend(
    queries: Queries,
    now: datetime,
    period: Period = "month",
    *,
    filters: Filters | None = None,
    tz: str = "UTC",
    settings: Settings | None = None,
) -> Forecast:
    """The day's or month's spend projected to its end from the store (``now`` injected)."""
    settings = settings or Settings()
    zone = ZoneInfo(tz)
    start, _ = period_bounds(now, period, zone)
    today, _ = period_bounds(now, "day", zone)
    since = min(start, today - timedelta(days=settings.days))
    buckets = queries.spend(
        Window(start=since.astimezone(UTC), end=now.astimezone(UTC)),
        filters or Filters(),
        step="hour",
        tz=tz,
    )
    hours = [(bucket.start, float(bucket.cost_usd)) for bucket in buckets]
    return project(hours, now, period, tz=tz, settings=settings)
