"""Spend forecasts and burn rates: the interval's coverage on many generated months, and the
store's figures against the formulas worked out here with numpy and scipy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest
from scipy import stats

from aivitals.model import Call
from aivitals.query import Queries
from aivitals.query.burn import burn_rates
from aivitals.query.forecast import Settings, forecast_spend, project
from aivitals.store.sql import SqlStore
from tests.support.histories import RHYTHM

SHARE = np.asarray(RHYTHM) / sum(RHYTHM)
WEEKDAY = np.asarray([1.0, 1.05, 1.1, 1.0, 0.95, 0.5, 0.4])  # quiet weekends


def generated_month(
    rng: np.random.Generator, month: datetime
) -> tuple[list[tuple[datetime, float]], datetime, list[tuple[datetime, float]]]:
    """28 days before ``month`` and the month itself, hourly: the hours known at a moment inside
    the month (the current hour as far as it has gone), that moment, and every hour as it went."""
    start = month - timedelta(days=28)
    end = (month + timedelta(days=32)).replace(day=1)
    hours: list[tuple[datetime, float]] = []
    day = start
    while day < end:
        total = 100.0 * WEEKDAY[day.weekday()] * rng.lognormal(0, 0.25)
        # Hours jitter about the rhythm (a gamma of mean 1), and the day keeps its total.
        parts = SHARE * rng.gamma(20, 1 / 20, 24)
        for h, part in enumerate(parts / parts.sum()):
            hours.append((day + timedelta(hours=h), float(total * part)))
        day += timedelta(days=1)
    now = month + timedelta(days=float(rng.uniform(3, 27)))
    known = [
        (at, usd * min(1.0, (now - at).total_seconds() / 3600)) for at, usd in hours if at < now
    ]
    return known, now, hours


def realised(hours: list[tuple[datetime, float]], start: datetime, end: datetime) -> float:
    return sum(usd for at, usd in hours if start <= at < end)


def within_binomial(covered: int, runs: int, nominal: float) -> bool:
    low, high = stats.binom.interval(0.999, runs, nominal)
    return bool(low <= covered <= high)


def test_the_month_end_interval_covers_the_realised_spend_at_its_nominal_rate() -> None:
    rng = np.random.default_rng(14)
    runs, covered = 300, 0
    for i in range(runs):
        month = datetime(2025 + i // 12 % 3, i % 12 + 1, 1, tzinfo=UTC)
        known, now, hours = generated_month(rng, month)
        found = project(known, now, "month")
        assert found.verdict == "ok" and found.method == "hour-of-week"
        assert found.low_usd is not None and found.high_usd is not None
        covered += found.low_usd <= realised(hours, found.start, found.end) <= found.high_usd
    # docs/drift.md: 90% nominal; this run covers 263 of 300 (87.7%).
    assert within_binomial(covered, runs, 0.9), covered / runs


def test_the_day_end_interval_covers_the_realised_spend_at_its_nominal_rate() -> None:
    rng = np.random.default_rng(15)
    runs, covered = 300, 0
    for i in range(runs):
        month = datetime(2026, i % 12 + 1, 1, tzinfo=UTC)
        known, now, hours = generated_month(rng, month)
        found = project(known, now, "day")
        assert found.start == now.replace(hour=0, minute=0, second=0, microsecond=0)
        assert found.low_usd is not None and found.high_usd is not None
        covered += found.low_usd <= realised(hours, found.start, found.end) <= found.high_usd
    assert within_binomial(covered, runs, 0.9), covered / runs


START = datetime(2026, 11, 1, tzinfo=UTC)


def priced_calls(days: int) -> list[Call]:
    rng = np.random.default_rng(21)
    calls = []
    for d in range(days + 1):
        for h in range(24):
            for i in range(int(rng.poisson(RHYTHM[h] / 10))):
                calls.append(
                    Call(
                        id=f"c-{d}-{h}-{i}",
                        provider="openai",
                        model="gpt-a",
                        started_at=START
                        + timedelta(days=d, hours=h, seconds=float(rng.uniform(0, 3600))),
                        latency_ms=500.0,
                        cost_usd=Decimal(str(round(float(rng.uniform(0.001, 0.02)), 6))),
                    )
                )
    return calls


def test_the_day_end_forecast_from_the_store_is_spend_so_far_plus_the_hourly_profile(
    store_target: str,
) -> None:
    calls = priced_calls(10)
    store = SqlStore.open(store_target)
    store.write(calls, [])
    now = START + timedelta(days=10, hours=12, minutes=30)
    try:
        found = forecast_spend(Queries(store.engine), now, "day")
    finally:
        store.close()
    today = START + timedelta(days=10)
    spent = sum(float(c.cost_usd or 0) for c in calls if today <= c.started_at < now)
    grid = np.zeros((10, 24))
    for c in calls:
        if c.started_at < today:
            d = (c.started_at - START).days
            grid[d, c.started_at.hour] += float(c.cost_usd or 0)
    profile = grid.mean(axis=0)
    left = 0.5 * profile[12] + profile[13:].sum()
    assert (found.verdict, found.method, found.history_days) == ("ok", "hour-of-day", 10)
    assert found.spent_usd == pytest.approx(spent)
    assert found.projected_usd == pytest.approx(spent + left)
    totals = grid.sum(axis=1)
    s2 = float(np.var(totals, ddof=1))
    f = left / profile.sum()
    half = stats.t.ppf(0.95, 9) * np.sqrt(s2 * (f + f * f / 10))
    assert found.high_usd == pytest.approx(spent + left + half)
    assert found.low_usd == pytest.approx(spent + max(0.0, left - half))


def test_a_forecast_without_enough_history_says_so() -> None:
    now = START + timedelta(days=2, hours=5)
    hours = [(START + timedelta(hours=h), 1.0) for h in range(53)]
    found = project(hours, now, "month", settings=Settings(min_days=3))
    assert (found.verdict, found.projected_usd, found.history_days) == ("not enough data", None, 2)
    assert found.spent_usd == pytest.approx(53.0)


def test_burn_rates_over_two_windows_against_the_budget_share(store_target: str) -> None:
    now = START + timedelta(days=10, hours=12)
    rows = [
        (10, "0.5", "search"),
        (50, "1.5", "search"),
        (120, "3.0", "search"),
        (200, "4.0", "chat"),
    ]
    calls = [
        Call(
            id=f"b-{ago}",
            provider="openai",
            model="gpt-a",
            feature=feature,
            started_at=now - timedelta(minutes=ago),
            latency_ms=100.0,
            cost_usd=Decimal(usd),
        )
        for ago, usd, feature in rows
    ]
    store = SqlStore.open(store_target)
    store.write(calls, [])
    try:
        found = burn_rates(Queries(store.engine), now, budget_usd=720.0, by=("feature",))
    finally:
        store.close()
    per_hour = 720.0 / (30 * 24)  # November: 30 days
    search = found[(("feature", "search"),)]
    assert [b.window_s for b in search] == [3600, 6 * 3600]
    assert search[0].rate == pytest.approx(2.0 / per_hour)
    assert search[1].rate == pytest.approx(5.0 / (6 * per_hour))
    chat = found[(("feature", "chat"),)]
    assert [b.rate for b in chat] == [0.0, pytest.approx(4.0 / (6 * per_hour))]
