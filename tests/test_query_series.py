from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from aivitals.model import Call
from aivitals.query import Filters, Queries, QueryError, SpendBucket, TopItem, Window
from aivitals.store.rows import epoch_ms

from .support.helpers import make_call
from .support.postgres import StoreTargets
from .test_query_store import T0, in_window, passes, random_dataset, reference, write_store

NEW_YORK = ZoneInfo("America/New_York")


def test_spend_by_day_in_new_york_across_the_end_of_summer_time(
    store_targets: StoreTargets,
) -> None:
    # Summer time ends on 2026-11-01 at 02:00 local (06:00 UTC): that local day lasts 25 hours.
    def utc(day: int, hour: int, minute: int = 0, ms: int = 0) -> datetime:
        return datetime(2026, 10 if day > 10 else 11, day, hour, minute, tzinfo=UTC) + timedelta(
            milliseconds=ms
        )

    spent = {
        utc(31, 23): "64",  # before the window
        utc(1, 3, 59, 59_999): "1",  # 2026-10-31 23:59:59.999 in New York
        utc(1, 4): "2",  # local midnight, 2026-11-01
        utc(2, 4, 30): "4",  # 2026-11-01 23:30 EST: still the long day
        utc(2, 5): "8",  # local midnight, 2026-11-02
        utc(3, 12): "16",
        utc(4, 0): "32",  # the window's end is exclusive
    }
    calls = [
        make_call(started_at=at, cost_usd=Decimal(usd), user="ann" if usd in ("2", "8") else None)
        for at, usd in spent.items()
    ]
    queries = Queries(write_store(store_targets(), calls))
    window = Window(start=utc(1, 0), end=utc(4, 0))
    got = queries.spend(window, Filters(), "day", "America/New_York")
    assert got == [
        SpendBucket(datetime(2026, 10, 31, tzinfo=NEW_YORK), Decimal(1)),
        SpendBucket(datetime(2026, 11, 1, tzinfo=NEW_YORK), Decimal(6)),
        SpendBucket(datetime(2026, 11, 2, tzinfo=NEW_YORK), Decimal(8)),
        SpendBucket(datetime(2026, 11, 3, tzinfo=NEW_YORK), Decimal(16)),
    ]
    assert [bucket.start.utcoffset() for bucket in got] == [
        timedelta(hours=-4),
        timedelta(hours=-4),
        timedelta(hours=-5),
        timedelta(hours=-5),
    ]
    # A user filter reads raw calls: the same local days.
    ann = queries.spend(window, Filters(user="ann"), "day", "America/New_York")
    assert [(b.start, b.cost_usd) for b in ann] == [
        (bucket.start, Decimal(usd)) for bucket, usd in zip(got, (0, 2, 8, 0), strict=True)
    ]
    assert sum(b.cost_usd for b in queries.spend(window, step="day")) == Decimal(31)
    assert [b.cost_usd for b in queries.spend(window, step="day")] == [
        Decimal(3),
        Decimal(12),
        Decimal(16),
    ]


def test_spend_by_hour_in_a_half_hour_time_zone(store_targets: StoreTargets) -> None:
    start = T0  # 05:30 in Kolkata: local hours start at half past each UTC hour
    spent = {
        timedelta(minutes=29, seconds=59): "0.1",
        timedelta(minutes=30): "0.2",
        timedelta(hours=2, minutes=45): "0.4",
        timedelta(hours=3): "0.8",
    }
    calls = [make_call(started_at=start + d, cost_usd=Decimal(usd)) for d, usd in spent.items()]
    queries = Queries(write_store(store_targets(), calls))
    got = queries.spend(
        Window(start=start, end=start + timedelta(hours=3)), step="hour", tz="Asia/Kolkata"
    )
    assert [(b.start.astimezone(UTC) - start, b.cost_usd) for b in got] == [
        (timedelta(minutes=-30), Decimal("0.1")),
        (timedelta(minutes=30), Decimal("0.2")),
        (timedelta(minutes=90), Decimal(0)),
        (timedelta(minutes=150), Decimal("0.4")),
    ]


def test_spend_refuses_unknown_zones_and_steps(store_targets: StoreTargets) -> None:
    queries = Queries(write_store(store_targets(), []))
    window = Window(start=T0, end=T0 + timedelta(days=1))
    with pytest.raises(QueryError, match="unknown time zone 'Mars/Olympus'"):
        queries.spend(window, tz="Mars/Olympus")
    with pytest.raises(QueryError, match="use hour or day"):
        queries.spend(window, step="minute")
    assert queries.spend(Window(start=T0, end=T0)) == []


@pytest.mark.parametrize(("step", "seconds"), [("minute", 60), ("hour", 3600), ("day", 86400)])
def test_timeseries_buckets_match_a_raw_computation(
    store_targets: StoreTargets, step: str, seconds: int
) -> None:
    data = random_dataset(11, 300, days=3)
    queries = Queries(write_store(store_targets(), data.calls))
    moments = sorted(c.started_at for c in data.calls)
    window = Window(start=moments[20], end=moments[-20] - timedelta(milliseconds=1))
    if step == "minute":
        window = Window(start=moments[100], end=moments[100] + timedelta(hours=2, seconds=7))
    for by, filters in (
        (None, Filters()),
        ("model", Filters(status="ok")),
        ("model", Filters(user="ann")),
    ):
        points = queries.timeseries(window, filters, step, by)
        expected: dict[tuple[int, str | None], list[Call]] = {}
        for call in data.calls:
            if in_window(call, window.start, window.end) and passes(call, filters):
                bucket = epoch_ms(call.started_at) // 1000 // seconds * seconds
                expected.setdefault((bucket, call.model if by else None), []).append(call)
        got = {(int(p.start.timestamp()), p.group.get("model")): p for p in points}
        assert got.keys() == expected.keys()
        assert [p.start for p in points] == sorted(p.start for p in points)
        for key, members in expected.items():
            want = reference(members)
            point = got[key]
            assert (point.calls, point.errors, point.unpriced_calls) == (
                want["calls"],
                want["errors"],
                want["unpriced_calls"],
            )
            assert point.cost_usd == want["total_cost_usd"]
            assert (point.input_tokens, point.output_tokens) == (
                want["input_tokens"],
                want["output_tokens"],
            )
            for name in ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms"):
                assert getattr(point, name) == pytest.approx(want[name], rel=0.01), name


def test_top_spenders_by_user_and_by_model(store_targets: StoreTargets) -> None:
    def call(user: str | None, usd: str, model: str = "gpt-4o", minute: int = 1) -> Call:
        return make_call(
            started_at=T0 + timedelta(minutes=minute),
            user=user,
            cost_usd=Decimal(usd),
            model=model,
        )

    calls = [
        call("ann", "0.1"),
        call("ann", "0.2", "gpt-4o-mini"),
        call("ann", "0.2"),
        call("bob", "0.7"),
        call("cy", "0.5", "gpt-4o-mini"),
        call(None, "0.05"),
        call("dee", "9", minute=60 * 25),
    ]
    queries = Queries(write_store(store_targets(), calls))
    day = Window(start=T0, end=T0 + timedelta(days=1))
    assert queries.top(day, Filters(), "user") == [
        TopItem("bob", Decimal("0.7"), 1),
        TopItem("ann", Decimal("0.5"), 3),
        TopItem("cy", Decimal("0.5"), 1),
        TopItem(None, Decimal("0.05"), 1),
    ]
    assert queries.top(day, Filters(), "user", limit=2) == [
        TopItem("bob", Decimal("0.7"), 1),
        TopItem("ann", Decimal("0.5"), 3),
    ]
    assert queries.top(day, Filters(model="gpt-4o-mini"), "user") == [
        TopItem("cy", Decimal("0.5"), 1),
        TopItem("ann", Decimal("0.2"), 1),
    ]
    assert queries.top(day, Filters(), "model") == [
        TopItem("gpt-4o", Decimal("1.05"), 4),
        TopItem("gpt-4o-mini", Decimal("0.7"), 2),
    ]
    with pytest.raises(QueryError, match="use one of user, feature, team, model"):
        queries.top(day, Filters(), "status")
    with pytest.raises(QueryError, match="limit"):
        queries.top(day, Filters(), "user", limit=0)
    assert queries.top(day, by="team") == [TopItem(None, Decimal("1.75"), 6)]
