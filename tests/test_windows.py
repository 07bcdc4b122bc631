from __future__ import annotations

import random
from decimal import Decimal
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from ddsketch import LogCollapsingLowestDenseDDSketch
from ddsketch.ddsketch import BaseDDSketch

from aivitals.frozen_sketch import FrozenSketch
from aivitals.model import Score
from aivitals.percentile import rank
from aivitals.windows import LiveWindows

from .support.helpers import at, make_call

T0 = 1_790_000_000.0  # 2026-09-21 14:13:20 UTC, a fixed instant


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_percentiles_within_one_percent_of_exact() -> None:
    clock = Clock(T0)
    windows = LiveWindows(clock=clock)
    rng = random.Random(7)
    latencies = [rng.lognormvariate(6.0, 0.8) for _ in range(20_000)]
    for latency in latencies:
        windows.on_call(make_call(latency_ms=latency, started_at=at(T0 - 30)))
    view = windows.read(minutes=5)
    for q, got in ((50, view.latency_p50_ms), (95, view.latency_p95_ms), (99, view.latency_p99_ms)):
        exact = float(np.percentile(latencies, q, method="inverted_cdf"))
        assert got is not None
        assert abs(got - exact) / exact <= 0.01, q


def test_sums_counts_errors_cache_and_quality() -> None:
    clock = Clock(T0)
    windows = LiveWindows(clock=clock)
    started = at(T0 - 10)
    windows.on_call(make_call(cost_usd=Decimal("0.10"), cache="hit", started_at=started))
    windows.on_call(make_call(cost_usd=Decimal("0.20"), cache="miss", started_at=started))
    windows.on_call(
        make_call(status="error", error_type="rate_limit", cache="miss", started_at=started)
    )
    windows.on_call(make_call(status="error", error_type="timeout", started_at=started))
    windows.on_call(make_call(status="cancelled", model="gpt-4o", started_at=started))
    windows.on_score(
        Score(call_id="a", name="relevance", value=0.5, model="gpt-4o-mini", created_at=started)
    )
    windows.on_score(
        Score(
            call_id="b", name="relevance", value=4, max_value=5, model="gpt-4o", created_at=started
        )
    )
    view = windows.read(minutes=1)
    assert view.calls == 5
    assert view.errors == 2
    assert view.errors_by_type == {"rate_limit": 1, "timeout": 1}
    assert view.error_rate == pytest.approx(0.4)
    assert view.cancelled == 1
    assert view.cost_usd == Decimal("0.30")
    assert view.unpriced_calls == 3
    assert view.cost_per_call_usd == Decimal("0.15")
    assert view.cache_hit_ratio == pytest.approx(1 / 3)
    assert view.quality == {"relevance": pytest.approx((0.5 + 0.8) / 2)}
    only_4o = windows.read(minutes=1, model="gpt-4o")
    assert only_4o.calls == 1 and only_4o.quality == {"relevance": pytest.approx(0.8)}


def test_filters_by_feature_and_team() -> None:
    clock = Clock(T0)
    windows = LiveWindows(clock=clock)
    for feature, team in (("search", "a"), ("search", "b"), ("chat", "a")):
        windows.on_call(make_call(feature=feature, team=team, started_at=at(T0 - 5)))
    assert windows.read(minutes=1, feature="search").calls == 2
    assert windows.read(minutes=1, team="a").calls == 2
    assert windows.read(minutes=1, feature="chat", team="b").calls == 0
    assert len(windows.keys(minutes=1)) == 3


def test_last_minutes_slide_but_today_keeps_everything() -> None:
    clock = Clock(T0)
    windows = LiveWindows(clock=clock, minutes=10)
    for minute in range(30):
        windows.on_call(make_call(cost_usd=Decimal("1"), started_at=at(T0 + minute * 60)))
        clock.now = T0 + minute * 60 + 1
        windows.tick()
    assert windows.read(minutes=5).calls == 5
    assert windows.read(minutes=10).calls == 10
    today = windows.read(period="today")
    assert today.calls == 30 and today.cost_usd == Decimal(30)
    with pytest.raises(ValueError, match="between 1 and 10"):
        windows.read(minutes=11)


def test_day_starts_at_local_midnight_in_the_configured_zone() -> None:
    # Asia/Kolkata is UTC+5:30: its midnight falls on a half hour in UTC.
    zone = ZoneInfo("Asia/Kolkata")
    midnight_utc = 1_790_015_400.0  # 2026-09-21 18:30:00 UTC = 2026-09-22 00:00 in Kolkata
    clock = Clock(midnight_utc - 120)
    windows = LiveWindows(clock=clock, tz=zone)
    windows.on_call(
        make_call(cost_usd=Decimal("5"), latency_ms=10.0, started_at=at(midnight_utc - 90))
    )
    clock.now = midnight_utc - 30
    assert windows.read(period="today").cost_usd == Decimal("5")
    clock.now = midnight_utc + 30
    windows.on_call(
        make_call(cost_usd=Decimal("2"), latency_ms=10.0, started_at=at(midnight_utc + 10))
    )
    assert windows.read(period="today").cost_usd == Decimal("2")
    clock.now = midnight_utc + 120
    windows.tick()
    assert windows.read(period="today").cost_usd == Decimal("2")
    assert windows.read(period="month").cost_usd == Decimal("7")


def test_month_resets_on_the_first() -> None:
    end_of_october = 1_793_491_140.0  # 2026-10-31 23:59:00 UTC
    clock = Clock(end_of_october)
    windows = LiveWindows(clock=clock)
    windows.on_call(make_call(cost_usd=Decimal("3"), latency_ms=1.0, started_at=at(end_of_october)))
    clock.now = end_of_october + 120  # 2026-11-01 00:01
    windows.tick()
    assert windows.read(period="month").cost_usd == Decimal(0)
    assert windows.read(period="today").calls == 0


def test_late_call_counts_in_its_own_day_only_while_current() -> None:
    clock = Clock(T0)
    windows = LiveWindows(clock=clock)
    clock.now = T0 + 600
    windows.tick()
    windows.on_call(make_call(cost_usd=Decimal("1"), started_at=at(T0 + 60)))  # already folded
    windows.on_call(make_call(cost_usd=Decimal("9"), started_at=at(T0 - 3 * 86400)))  # days ago
    today = windows.read(period="today")
    assert today.cost_usd == Decimal("1")
    recent = windows.read(minutes=60)
    assert recent.calls == 1 and recent.cost_usd == Decimal("1")


def test_memory_is_bounded_whatever_the_volume() -> None:
    clock = Clock(T0)
    windows = LiveWindows(clock=clock, minutes=15)
    rng = random.Random(1)
    for step in range(240):  # four hours, a tick every minute
        clock.now = T0 + step * 60
        for _ in range(50):
            windows.on_call(
                make_call(latency_ms=rng.uniform(1, 60_000), started_at=at(clock.now - 1))
            )
        windows.tick()
    kept = windows._minutes  # the only structure that grows with time
    assert len(kept) <= 15 + 2  # kept minutes, the current one, calls ending in the next
    assert windows.read(period="today").calls == 240 * 50


def test_read_needs_exactly_one_window() -> None:
    windows = LiveWindows()
    with pytest.raises(ValueError, match="exactly one"):
        windows.read()
    with pytest.raises(ValueError, match="period"):
        windows.read(period="week")


Fed = tuple[int, float, float | None, Decimal, str]
"""(minute the call ended in, latency, time to first token, cost, feature)."""


def feed_an_hour(windows: LiveWindows, clock: Clock) -> list[Fed]:
    """60 minutes of calls on two keys, a tick after each: what was fed, call by call."""
    rng = random.Random(11)
    fed: list[Fed] = []
    for step in range(60):
        clock.now = T0 + step * 60
        for n in range(40):
            latency = rng.lognormvariate(3.0, 1.2)
            ttft = latency * rng.random() if n % 3 == 0 else None
            cost = Decimal(rng.randrange(1, 10_000)) / 10**9
            ended = clock.now + rng.uniform(0, 59)
            feature = "search" if n % 2 else "chat"
            windows.on_call(
                make_call(
                    latency_ms=latency,
                    ttft_ms=ttft,
                    cost_usd=cost,
                    feature=feature,
                    started_at=at(ended - latency / 1000),
                )
            )
            fed.append((int(ended // 60), latency, ttft, cost, feature))
        clock.now += 60
        windows.tick()
    return fed


def nearest_rank(sketch: LogCollapsingLowestDenseDDSketch, q: float) -> float | None:
    """The bin of the nearest rank's value (aivitals.percentile.rank), read through ddsketch."""
    n = round(sketch.count)
    if n == 0:
        return None
    wanted = rank(q, n)
    return sketch.get_quantile_value(1.0 if wanted >= n else (wanted - 0.5) / (n - 1))


def test_a_read_over_ended_minutes_is_what_one_sketch_of_their_calls_reads() -> None:
    # The minutes that ended are kept compact (aivitals.frozen_sketch); a read over them must give
    # the figures of one ddsketch fed every call of the window, and exact counts and money.
    clock = Clock(T0)
    windows = LiveWindows(clock=clock)
    fed = feed_an_hour(windows, clock)
    now_minute = int(clock.now // 60)
    for minutes in (1, 2, 5, 17, 60):
        calls = [c for c in fed if c[0] > now_minute - minutes]
        latency = LogCollapsingLowestDenseDDSketch(0.01, bin_limit=2048)
        ttft = LogCollapsingLowestDenseDDSketch(0.01, bin_limit=2048)
        for _, value, first_token, _, _ in calls:
            latency.add(value)
            if first_token is not None:
                ttft.add(first_token)
        view = windows.read(minutes=minutes)
        assert view.calls == len(calls)
        assert view.cost_usd == sum((c[3] for c in calls), Decimal(0))
        if not calls:
            assert view.latency_p50_ms is None
            continue
        for q, got in ((0.5, view.latency_p50_ms), (0.99, view.latency_p99_ms)):
            assert got == nearest_rank(latency, q), (minutes, q)
        assert view.latency_max_ms == latency.get_quantile_value(1.0)
        assert view.ttft_p95_ms == nearest_rank(ttft, 0.95)
    in_reach = [c for c in fed if c[0] > now_minute - 60]
    assert windows.read(minutes=60, feature="search").calls == sum(
        1 for c in in_reach if c[4] == "search"
    )
    assert windows.read(period="today").calls == len(fed)


def test_ended_minutes_are_kept_frozen_and_a_late_call_thaws_its_minute_only_until_the_next_fold() -> (
    None
):
    clock = Clock(T0)
    windows = LiveWindows(clock=clock)
    feed_an_hour(windows, clock)
    now_minute = int(clock.now // 60)
    ended = [part for minute, part in windows._minutes.items() if minute < now_minute]
    assert len(ended) >= 58
    for part in ended:
        for agg in part.aggs.values():
            assert isinstance(agg.latency, FrozenSketch)
            assert agg.latency.positive is not None
            # A byte a bin: no bin of a minute here counts 256 calls.
            assert agg.latency.positive.counts.nbytes == len(agg.latency.positive.counts)

    before = windows.read(minutes=10)
    late_minute = now_minute - 5
    # Ends a second into a minute that has ended, on a key it already holds.
    windows.on_call(
        make_call(latency_ms=90_000.0, feature="chat", started_at=at(late_minute * 60 + 1.0 - 90))
    )
    after = windows.read(minutes=10)
    assert after.calls == before.calls + 1
    assert after.latency_max_ms is not None and abs(after.latency_max_ms - 90_000.0) <= 900.0
    assert isinstance(
        windows._minutes[late_minute].aggs[("openai", "gpt-4o-mini", "chat", "")].latency,
        BaseDDSketch,
    )

    clock.now += 60
    windows.tick()
    part = windows._minutes[late_minute]
    assert all(isinstance(agg.latency, FrozenSketch) for agg in part.aggs.values())
    assert windows.read(minutes=10).latency_max_ms == after.latency_max_ms
