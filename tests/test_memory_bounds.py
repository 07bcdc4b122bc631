"""What the gateway keeps per key stays bounded however many keys pass (benchmarks/bench_soak.py).

Each test counts entries, never bytes or seconds: a structure that grew with every key seen
would hold thousands here.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from aivitals.gateway.budgets import Budget, BudgetLedger
from aivitals.gateway.limits import Limit, RateLimiter
from aivitals.model import Call

USERS = 5_000


def per_user(user: str, *, rpm: int | None = 10, tpm: int | None = None) -> Limit:
    return Limit(scope="user", value=user, requests_per_minute=rpm, tokens_per_minute=tpm)


def test_request_windows_of_users_gone_quiet_are_dropped() -> None:
    clock = [0.0]
    limiter = RateLimiter(clock=lambda: clock[0])
    for n in range(USERS):
        clock[0] = n * 0.001
        assert limiter.admit([per_user(f"user-{n}")]).allowed
    assert limiter.keys_kept == USERS

    clock[0] = 70.0  # every one of those requests is past the one-minute window
    assert limiter.admit([per_user("late")]).allowed

    assert limiter.keys_kept == 1


def test_token_windows_of_users_gone_quiet_are_dropped() -> None:
    clock = [0.0]
    limiter = RateLimiter(clock=lambda: clock[0])
    for n in range(USERS):
        limiter.spend_tokens([per_user(f"user-{n}", rpm=None, tpm=1_000)], 50)
    assert limiter.keys_kept == USERS

    clock[0] = 61.0
    limiter.spend_tokens([per_user("late", rpm=None, tpm=1_000)], 50)

    assert limiter.keys_kept == 1


def test_windows_still_in_the_minute_are_kept_and_still_refuse() -> None:
    clock = [0.0]
    limiter = RateLimiter(clock=lambda: clock[0])
    busy = per_user("busy", rpm=2)
    assert limiter.admit([per_user("quiet", rpm=2)]).allowed
    clock[0] = 30.0
    assert limiter.admit([busy]).allowed
    assert limiter.admit([busy]).allowed

    clock[0] = 75.0  # the sweep runs: "quiet" is 75 s old, "busy" 45 s
    refused = limiter.admit([busy])

    assert not refused.allowed
    assert refused.retry_after_s == 15
    assert limiter.keys_kept == 1


def test_keys_kept_stay_bounded_under_a_steady_stream_of_new_users() -> None:
    clock = [0.0]
    limiter = RateLimiter(clock=lambda: clock[0])
    most = 0
    for n in range(30_000):
        clock[0] = n * 0.01  # 100 new users a second for five minutes
        limiter.admit([per_user(f"user-{n}")])
        most = max(most, limiter.keys_kept)

    # At most two minutes of users (the window, and the minute until the next sweep).
    assert most <= 12_001
    assert limiter.keys_kept <= 12_001


EVENING = datetime(2026, 11, 24, 21, 0, tzinfo=UTC)
NEXT_MORNING = EVENING + timedelta(hours=12)


def each_user_daily() -> Budget:
    return Budget(scope="user", period="day", usd=Decimal("5"))


def spend(book: BudgetLedger, user: str, at: datetime, usd: str = "0.01") -> None:
    book.on_call(
        Call(
            provider="openai",
            model="m",
            latency_ms=1.0,
            cost_usd=Decimal(usd),
            started_at=at,
            user=user,
        )
    )


def test_budget_totals_of_an_ended_day_are_dropped_by_the_next_days_first_call() -> None:
    now = [EVENING]
    book = BudgetLedger([each_user_daily()], clock=lambda: now[0])
    for n in range(USERS):
        spend(book, f"user-{n}", EVENING)
    assert book.spend_entries == USERS

    now[0] = NEXT_MORNING
    spend(book, "early", NEXT_MORNING, "0.25")

    assert book.spend_entries == 1
    assert book.spent("user", "early", "day") == Decimal("0.25")
    assert book.spent("user", "user-0", "day") == 0


def test_budget_totals_of_the_current_day_are_kept_whatever_a_call_is_stamped() -> None:
    now = [EVENING]
    book = BudgetLedger([each_user_daily()], clock=lambda: now[0])
    spend(book, "alice", EVENING, "1.5")
    # A call stamped tomorrow (a client's clock ahead) does not end today for everyone.
    spend(book, "bob", NEXT_MORNING)

    assert book.spent("user", "alice", "day") == Decimal("1.5")
    assert book.spend_entries == 2
