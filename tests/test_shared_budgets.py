"""Shared budgets (`aivitals.shared.budgets`) against a real redis-server.

Several `SharedBudgetLedger`s, each with its own link (as separate processes would have),
reserve concurrently; the holds never pass the budget across them, spend lands before its hold
is given back, periods reset on a new key at local midnight (injected clock), a dead process's
holds lapse, and Redis down falls back to local accounting, then reconciles.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import pytest

from aivitals.gateway.budgets import Budget, BudgetLedger, Hold, Refusal
from aivitals.query import Queries
from aivitals.shared.budgets import SharedBudgetLedger, SharedHold, nano
from aivitals.shared.link import RedisLink
from aivitals.shared.writer import Writer
from aivitals.store.sql import SqlStore
from tests.support.helpers import make_call
from tests.support.realservers import poll
from tests.support.redis_server import RawClients, RedisServer

raw = RawClients()


@pytest.fixture(autouse=True)
def _close_raw_clients() -> Iterator[None]:
    yield
    raw.close()


T = TypeVar("T")
DAY = Budget(scope="user", period="day", usd=Decimal("1"))
ASK = Decimal("0.05")  # the worst case of each request: 20 fit in $1


class Ledgers:
    """Ledgers with a link each, sharing one clock and one event loop to await on."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
        self.made: list[SharedBudgetLedger] = []
        self.runner = asyncio.Runner()

    def clock(self) -> datetime:
        return self.now

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.runner.run(coroutine)

    def make(
        self, budgets: list[Budget] | None = None, *, hold_ttl_s: float = 30.0, **options: Any
    ) -> SharedBudgetLedger:
        link = RedisLink(self.url, retry_s=0.05, socket_timeout_s=0.5, connect_timeout_s=0.5)
        writer = Writer(link, tick_s=options.pop("tick_s", 0.1))
        ledger = SharedBudgetLedger(
            budgets or [DAY], link, writer, clock=self.clock, hold_ttl_s=hold_ttl_s, **options
        )
        writer.start()
        self.made.append(ledger)
        return ledger

    def close(self) -> None:
        for ledger in self.made:
            ledger.writer.close()
            self.run(ledger.link.aclose())
            ledger.link.close()
        self.runner.close()


@pytest.fixture
def ledgers(redis_db: str) -> Iterator[Ledgers]:
    made = Ledgers(redis_db)
    yield made
    made.close()


def reserve_all(ledgers: Ledgers, shared: list[SharedBudgetLedger], n: int) -> list[Hold | Refusal]:
    async def go() -> list[Hold | Refusal]:
        return list(
            await asyncio.gather(
                *(shared[i % len(shared)].reserve_async(ASK, user="ann") for i in range(n))
            )
        )

    return ledgers.run(go())


def spent_nano(url: str, ledger: SharedBudgetLedger, at: datetime, user: str = "ann") -> int:
    start, _ = ledger.period_bounds("day", at)
    key = ledger.period_key("user", user, "day", start)
    return int(raw(url).hget(key, "spent") or 0)


def test_in_memory_ledgers_each_hold_the_whole_budget() -> None:
    # The finding: two processes, two ledgers, twice the budget in flight.
    local = [BudgetLedger([DAY]) for _ in range(2)]
    held = [local[i % 2].reserve(ASK, user="ann") for i in range(60)]
    assert sum(isinstance(h, Hold) for h in held) == 40


def test_three_ledgers_hold_at_most_the_budget_when_60_arrive_at_once(ledgers: Ledgers) -> None:
    shared = [ledgers.make() for _ in range(3)]
    answers = reserve_all(ledgers, shared, 60)
    holds = [a for a in answers if isinstance(a, SharedHold)]
    refusals = [a for a in answers if isinstance(a, Refusal)]
    assert len(holds) == int(DAY.usd / ASK) == 20
    assert len(refusals) == 40
    assert refusals[0].held_usd == Decimal("1.00") and refusals[0].spent_usd == 0
    assert refusals[0].retry_after_s == 1  # room comes back when calls in flight end


def test_spend_lands_before_the_hold_it_settles_is_released(
    ledgers: Ledgers, redis_db: str
) -> None:
    first, second = ledgers.make(), ledgers.make()
    holds = [h for h in reserve_all(ledgers, [first, second], 20) if isinstance(h, SharedHold)]
    assert len(holds) == 20
    cost = Decimal("0.03")
    for hold in holds:
        first.on_call(make_call(user="ann", cost_usd=cost, started_at=ledgers.now))
        hold.release()
        hold.release()  # idempotent
    assert first.writer.flush()
    assert spent_nano(redis_db, first, ledgers.now) == 20 * nano(cost)
    # $0.60 spent, nothing held: eight more fit ($0.40 / $0.05), on any ledger.
    more = reserve_all(ledgers, [second], 10)
    assert sum(isinstance(h, Hold) for h in more) == 8
    refusal = next(r for r in more if isinstance(r, Refusal))
    assert refusal.spent_usd == Decimal("0.6")


def test_a_period_resets_on_a_new_key_at_local_midnight(ledgers: Ledgers, redis_db: str) -> None:
    ledgers.now = datetime(2026, 12, 1, 22, 59, tzinfo=UTC)  # 23:59 in Paris
    ledger = ledgers.make(timezone="Europe/Paris")
    ledger.on_call(make_call(user="ann", cost_usd=Decimal("1"), started_at=ledgers.now))
    assert ledger.writer.flush()
    refused = ledgers.run(ledger.reserve_async(ASK, user="ann"))
    assert isinstance(refused, Refusal) and refused.final
    assert f"{refused.resets_at:%Y-%m-%d %H:%M %Z}" == "2026-12-02 00:00 CET"
    client = raw(redis_db, decode=True)
    keys = sorted(client.keys("aivitals:budget:*"))
    assert keys == ["aivitals:budget:day:2026-12-01T00:00+0100:user:ann"]
    ledgers.now += timedelta(minutes=1)
    assert isinstance(ledgers.run(ledger.reserve_async(ASK, user="ann")), SharedHold)
    ttl = raw(redis_db).ttl("aivitals:budget:day:2026-12-01T00:00+0100:user:ann")
    assert ttl > 0  # the old period's key expires (a day after its end)


def test_a_dead_process_holds_lapse_and_a_live_one_renews_its_own(
    ledgers: Ledgers, redis_db: str
) -> None:
    budget = Budget(scope="team", period="day", usd=ASK)  # room for one hold
    alive = ledgers.make([budget], hold_ttl_s=0.5, tick_s=0.05)
    held = ledgers.run(alive.reserve_async(ASK, team="t"))
    assert isinstance(held, SharedHold)
    other = ledgers.make([budget], hold_ttl_s=0.5, tick_s=0.05)
    renewals = [0]
    alive.writer.ticks.append(lambda client: renewals.__setitem__(0, renewals[0] + 1))
    # Several leases long, the live process's hold is still there.
    poll("ten renewals", lambda: renewals[0] >= 10)
    assert isinstance(ledgers.run(other.reserve_async(ASK, team="t")), Refusal)
    # Its process dies: nothing renews or releases the hold; it lapses after one lease.
    alive.writer.close()
    poll(
        "the dead process's hold to lapse",
        lambda: isinstance(ledgers.run(other.reserve_async(ASK, team="t")), SharedHold),
    )


def test_redis_down_falls_back_to_local_accounting_and_adds_the_deltas_after_a_blip(
    ledgers: Ledgers, redis_db: str, redis_server: RedisServer
) -> None:
    ledger = ledgers.make()
    cost = Decimal("0.1")
    ledger.on_call(make_call(user="ann", cost_usd=cost, started_at=ledgers.now))
    assert ledger.writer.flush()  # the reserve below then reads it back as the shared spend
    assert isinstance(ledgers.run(ledger.reserve_async(ASK, user="ann")), SharedHold)
    redis_server.freeze()  # a blip: Redis keeps its data
    try:
        fallback = ledgers.run(ledger.reserve_async(ASK, user="ann"))
        assert isinstance(fallback, Hold) and not isinstance(fallback, SharedHold)
        for _ in range(3):
            ledger.on_call(make_call(user="ann", cost_usd=cost, started_at=ledgers.now))
        assert ledger.writer.flush()
        # Locally: the shared spend last seen ($0.10) plus this process's since ($0.30).
        assert ledger.spent("user", "ann", "day") == Decimal("0.4")
        refused = ledgers.run(ledger.reserve_async(Decimal("0.6"), user="ann"))
        assert isinstance(refused, Refusal)  # 0.4 spent + 0.05 held + 0.6 > 1
        metrics = ledger.link.metrics.registry
        assert metrics.get_sample_value("aivitals_redis_fallbacks_total", {"feature": "budgets"})
    finally:
        redis_server.thaw()
    poll("the link back up", lambda: ledger.link.up)
    assert ledger.writer.flush()
    assert spent_nano(redis_db, ledger, ledgers.now) == 4 * nano(cost)


def test_redis_back_empty_reseeds_from_the_store(
    ledgers: Ledgers, redis_db: str, redis_server: RedisServer, tmp_path: Path
) -> None:
    store = SqlStore.open(tmp_path / "aivitals.db")
    try:
        ledger = ledgers.make()
        calls = [
            make_call(user="ann", cost_usd=Decimal("0.2"), started_at=ledgers.now) for _ in range(2)
        ]
        store.write(calls, [])
        ledger.reload(Queries(store.engine))
        assert spent_nano(redis_db, ledger, ledgers.now) == nano(Decimal("0.4"))
        redis_server.stop()
        during = make_call(user="ann", cost_usd=Decimal("0.3"), started_at=ledgers.now)
        ledger.on_call(during)
        store.write([during], [])  # the recorder stores it as well, outage or not
        assert ledger.writer.flush()
        redis_server.start()  # empty: no persistence, no sentinel
        poll("the link back up", lambda: ledger.link.up)
        assert ledger.writer.flush()
        # Reseeded from the store (which holds the outage's call): not the delta added to 0.
        assert spent_nano(redis_db, ledger, ledgers.now) == nano(Decimal("0.7"))
        assert raw(redis_db).exists("aivitals:seeded")
    finally:
        store.close()


def test_a_restart_seeds_todays_spend_once_whoever_starts_first(
    ledgers: Ledgers, redis_db: str, tmp_path: Path
) -> None:
    store = SqlStore.open(tmp_path / "aivitals.db")
    try:
        store.write([make_call(user="ann", cost_usd=Decimal("0.5"), started_at=ledgers.now)], [])
        first, second = ledgers.make(), ledgers.make()
        first.reload(Queries(store.engine))
        first.on_call(make_call(user="ann", cost_usd=Decimal("0.25"), started_at=ledgers.now))
        assert first.writer.flush()
        second.reload(Queries(store.engine))  # SET NX: does not overwrite the live total
        assert spent_nano(redis_db, first, ledgers.now) == nano(Decimal("0.75"))
    finally:
        store.close()


def hold_count(ledger: SharedBudgetLedger) -> Callable[[], int]:
    return lambda: len(ledger._live)


def test_two_processes_back_on_an_empty_redis_count_the_outage_once(
    ledgers: Ledgers, redis_db: str, redis_server: RedisServer, tmp_path: Path
) -> None:
    store = SqlStore.open(tmp_path / "aivitals.db")
    try:
        store.write([make_call(user="ann", cost_usd=Decimal("0.3"), started_at=ledgers.now)], [])
        first, second = ledgers.make(), ledgers.make()
        for ledger in (first, second):
            ledger.reload(Queries(store.engine))
        redis_server.stop()  # and back empty: the 0.3 in Redis is gone
        during = [
            make_call(user="ann", cost_usd=Decimal("0.1"), started_at=ledgers.now) for _ in range(4)
        ]
        for i, call in enumerate(during):
            (first if i % 2 else second).on_call(call)
        store.write(during, [])  # each process's recorder stores its calls, outage or not
        assert first.writer.flush() and second.writer.flush()
        redis_server.start()
        poll("both links back up", lambda: first.link.up and second.link.up)
        assert first.writer.flush() and second.writer.flush()
        # One reseeded from the store (0.3 + 0.4); the other saw the new epoch and added
        # nothing (adding its 0.2 would count it twice; adding deltas alone would lose the 0.3).
        assert spent_nano(redis_db, first, ledgers.now) == nano(Decimal("0.7"))
    finally:
        store.close()
