"""Budgets shared by every gateway process: spend and holds as per-period counters in Redis.

`SharedBudgetLedger` is a `BudgetLedger` whose spend and admission holds live in Redis, one hash
per budgeted user, team or feature and period, named with the period's start in the configured
time zone (``aivitals:budget:day:2026-12-01T00:00+0100:team:search``): a reset is a new key,
which no process can miss, and the old one expires a day after its period ends. Amounts are
integer nano-dollars (spend rounded up, so rounding never lets a budget pass its limit).

`reserve_async` is one Lua script: it prunes holds whose lease ran out, checks spend + held +
the request's worst case against every budget the request falls under, and holds it in all of
them or none. A hold is a member of a sorted set scored by its lease's end (Redis time) with its
amount in the hash; the process holding it renews the lease every few seconds, so a process that
dies (``kill -9``) leaks its holds for one lease at most (``hold_ttl_s``, 30 s by default).

Spend (`on_call`, an inline sink of the recorder) and releases are queued to the writer thread in
that order, so a call's cost is in Redis before the hold it settles is given back.

**Redis down.** `reserve_async` falls back to the in-memory ledger of this process (what
`BudgetLedger` does alone: the shared spend as last seen, plus this process's calls since), and
the spend it cannot send is kept as deltas. When Redis answers again the sentinel key
``aivitals:seeded`` tells a blip from a restart: present, the deltas are added; missing (Redis
came back empty), the current periods are reseeded from the store, which holds every call, the
outage's included, and the deltas are dropped (they are in the store). See docs/shared-state.md.
"""

from __future__ import annotations

import logging
import threading
import uuid
import weakref
from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import ROUND_CEILING, Decimal
from typing import Any, cast

import redis
import redis.asyncio

from aivitals.gateway.budgets import Budget, BudgetLedger, Hold, Period, Refusal
from aivitals.model import Call, utc_now
from aivitals.query import Queries
from aivitals.shared.link import RedisLink, Unavailable
from aivitals.shared.writer import Write, Writer

log = logging.getLogger("aivitals.shared")

NANO = Decimal("1e9")
_GRACE_S = 86_400
"""A period's keys outlive its end by a day: a late call still finds (and ignores) them."""

# KEYS: per budget, its hash (spent, held, h:<id> amounts) and its holds' sorted set.
# ARGV: the ask (nano-dollars), the hold's id, the lease (ms), then per budget its limit
# (nano-dollars) and when its keys expire (unix seconds). Returns {1, spent...} when held, else
# {0, the budget's index (1-based), its spend, what others hold}.
RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ask = tonumber(ARGV[1])
local n = #KEYS / 2
local spent = {}
for i = 1, n do
  local h = KEYS[2 * i - 1]
  local z = KEYS[2 * i]
  local gone = redis.call('ZRANGEBYSCORE', z, '-inf', now)
  for _, id in ipairs(gone) do
    local amount = tonumber(redis.call('HGET', h, 'h:' .. id) or '0')
    redis.call('HINCRBY', h, 'held', -amount)
    redis.call('HDEL', h, 'h:' .. id)
  end
  if #gone > 0 then
    redis.call('ZREMRANGEBYSCORE', z, '-inf', now)
  end
  local s = tonumber(redis.call('HGET', h, 'spent') or '0')
  local held = tonumber(redis.call('HGET', h, 'held') or '0')
  local limit = tonumber(ARGV[2 + 2 * i])
  if s >= limit or s + held + ask > limit then
    return {0, i, s, held}
  end
  spent[i] = s
end
for i = 1, n do
  local h = KEYS[2 * i - 1]
  local z = KEYS[2 * i]
  redis.call('ZADD', z, now + tonumber(ARGV[3]), ARGV[2])
  redis.call('HSET', h, 'h:' .. ARGV[2], ask)
  redis.call('HINCRBY', h, 'held', ask)
  redis.call('EXPIREAT', h, ARGV[3 + 2 * i])
  redis.call('EXPIREAT', z, ARGV[3 + 2 * i])
end
local reply = {1}
for i = 1, n do reply[i + 1] = spent[i] end
return reply
"""

# KEYS: per budget, its hash and sorted set. ARGV: the hold's id. A hold already pruned (its
# lease ran out) or released is not given back twice.
RELEASE = """
for i = 1, #KEYS, 2 do
  if redis.call('ZREM', KEYS[i + 1], ARGV[1]) == 1 then
    local amount = tonumber(redis.call('HGET', KEYS[i], 'h:' .. ARGV[1]) or '0')
    redis.call('HINCRBY', KEYS[i], 'held', -amount)
    redis.call('HDEL', KEYS[i], 'h:' .. ARGV[1])
  end
end
return 1
"""

# KEYS: per budget, its sorted set. ARGV: the lease (ms), then the ids to renew (XX: a pruned
# hold stays gone).
RENEW = """
local t = redis.call('TIME')
local until_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], 'XX', until_ms, ARGV[i + 1])
end
return 1
"""


def nano(usd: Decimal) -> int:
    """Dollars as integer nano-dollars, rounded up.

    >>> nano(Decimal("0.0000000011")), nano(Decimal("2"))
    (2, 2000000000)
    """
    return int((usd * NANO).to_integral_value(rounding=ROUND_CEILING))


class SharedHold(Hold):
    """A hold in Redis; given back (queued to the writer) on `release` or when collected."""

    __slots__ = ("hold_id",)

    def __init__(
        self, ledger: SharedBudgetLedger, hold_id: str, keys: tuple[str, ...], usd: Decimal
    ) -> None:
        # Not Hold.__init__: that one gives back to the in-memory ledger.
        self.usd = usd
        self.hold_id = hold_id
        self._ledger = ledger
        # Any: Hold types its finalizer for the in-memory ledger's callback.
        self._finalizer = cast(Any, weakref.finalize(self, ledger._give_back, hold_id, keys))
        self._finalizer.atexit = False


class SharedBudgetLedger(BudgetLedger):
    """`BudgetLedger` over Redis (see the module's docstring); ``hold_ttl_s`` is a hold's lease."""

    def __init__(
        self,
        budgets: Sequence[Budget],
        link: RedisLink,
        writer: Writer,
        *,
        timezone: str = "UTC",
        clock: Callable[[], datetime] = utc_now,
        hold_ttl_s: float = 30.0,
    ) -> None:
        super().__init__(budgets, timezone=timezone, clock=clock)
        self.link = link
        self.writer = writer
        self.hold_ttl_ms = int(hold_ttl_s * 1000)
        self.queries: Queries | None = None
        self._reserve = redis.asyncio.Redis().register_script(RESERVE)
        self._release = link.sync.register_script(RELEASE)
        self._renew = link.sync.register_script(RENEW)
        self.sentinel = link.key("seeded")
        # Owned by the writer thread: holds alive (renewed each tick) and spend not yet sent.
        self._live: dict[str, tuple[str, ...]] = {}
        self._live_lock = threading.Lock()
        self._deltas: dict[tuple[str, int], int] = {}
        self._releases: list[tuple[str, tuple[str, ...]]] = []
        self._epoch: str | None = None
        writer.starters.append(self._connect)
        writer.reconcilers.append(self._reconcile)
        writer.ticks.append(self._renew_live)

    # -- keys --------------------------------------------------------------------------------

    def period_key(self, scope: str, value: str, period: str, start: datetime) -> str:
        """The hash of ``scope`` ``value``'s spend in the ``period`` starting at ``start``."""
        return self.link.key("budget", period, f"{start:%Y-%m-%dT%H:%M%z}", scope, value)

    def _expires_at(self, period: Period, start: datetime) -> int:
        _, end = self.period_bounds(period, start)
        return int(end.timestamp()) + _GRACE_S

    # -- admission ---------------------------------------------------------------------------

    async def reserve_async(
        self,
        usd: Decimal,
        *,
        user: str | None = None,
        team: str | None = None,
        feature: str | None = None,
        basis: str = "",
    ) -> Hold | Refusal:
        """Hold ``usd`` against every budget the request falls under, in Redis (one script),
        or in this process while Redis is down."""
        now = self._clock()
        covered: list[tuple[Budget, str, datetime, str]] = []
        for budget, value in self.covering(user=user, team=team, feature=feature):
            start, _ = self.period_bounds(budget.period, now)
            key = self.period_key(budget.scope, value, budget.period, start)
            if all(k != key for *_, k in covered):
                covered.append((budget, value, start, key))
        if not covered:
            return super().reserve(usd, user=user, team=team, feature=feature, basis=basis)
        hold_id = uuid.uuid4().hex
        keys: list[str] = []
        args: list[int | str] = [nano(usd), hold_id, self.hold_ttl_ms]
        for budget, _value, start, key in covered:
            keys += [key, key + ":holds"]
            args += [nano(budget.usd), self._expires_at(budget.period, start)]
        try:
            reply = await self.link.run(
                "budgets", lambda client: self._reserve(keys=keys, args=args, client=client)
            )
        except Unavailable:
            self.link.metrics.fallback("budgets")
            return super().reserve(usd, user=user, team=team, feature=feature, basis=basis)
        parts = [int(part) for part in reply]
        if parts[0] == 1:
            self._remember(
                [
                    (b, v, s, Decimal(spent) / NANO)
                    for (b, v, s, _), spent in zip(covered, parts[1:], strict=True)
                ]
            )
            pair = tuple(keys)
            with self._live_lock:
                self._live[hold_id] = pair
            return SharedHold(self, hold_id, pair, usd)
        _, index, spent_nano, held_nano = parts
        budget, value, start, _ = covered[index - 1]
        spent = Decimal(spent_nano) / NANO
        self._remember([(budget, value, start, spent)])
        return self._refusal(
            budget,
            value,
            now,
            spent=spent,
            held=Decimal(held_nano) / NANO,
            asked=usd,
            basis=basis,
        )

    def _remember(self, seen: list[tuple[Budget, str, datetime, Decimal]]) -> None:
        # The shared spend as last seen: what the in-memory fallback starts from if Redis goes.
        with self._lock:
            for budget, value, start, spent in seen:
                self._spent[(budget.scope, value, budget.period)] = (start, spent)

    def _give_back(self, hold_id: str, keys: tuple[str, ...]) -> None:
        # From release() or the garbage collector: only queue (no lock, see Hold).
        self.writer.put(
            Write(
                "budgets",
                lambda pipe: self._send_release(pipe, hold_id, keys),
                lambda: self._releases.append((hold_id, keys)),
            )
        )

    def _send_release(
        self, pipe: redis.client.Pipeline, hold_id: str, keys: tuple[str, ...]
    ) -> None:
        with self._live_lock:
            self._live.pop(hold_id, None)
        self._release(keys=list(keys), args=[hold_id], client=pipe)

    # -- spend -------------------------------------------------------------------------------

    def on_call(self, call: Call) -> None:
        """Count a priced call: in this process (the fallback's view) and, queued, in Redis."""
        super().on_call(call)
        if not call.cost_usd or not self._watched:
            return
        amount = nano(call.cost_usd)
        targets: list[tuple[str, int]] = []
        for scope, period in self._watched:
            value = getattr(call, scope)
            if value is None:
                continue
            start, _ = self.period_bounds(period, call.started_at)
            key = self.period_key(scope, value, period, start)
            targets.append((key, self._expires_at(period, start)))
        if not targets:
            return

        def send(pipe: redis.client.Pipeline) -> None:
            for key, expires in targets:
                pipe.hincrby(key, "spent", amount)
                pipe.expireat(key, expires)

        def keep() -> None:
            for target in targets:
                self._deltas[target] = self._deltas.get(target, 0) + amount

        self.writer.put(Write("budgets", send, keep))

    # -- start, renewals, reconciliation -----------------------------------------------------

    def reload(self, queries: Queries) -> int:
        """Read the current periods' spend from the store, and seed Redis with it where Redis
        has no total yet (HSETNX): a restart, or a new empty Redis, knows today's spend."""
        self.queries = queries
        loaded = super().reload(queries)
        try:
            self._seed(self.link.sync, from_store=False)
        except Exception as exc:
            # Down at start: the writer's probe reconciles (and seeds) when it answers.
            self.link.failed("budgets", exc)
        return loaded

    def _seed(self, client: redis.Redis, *, from_store: bool) -> None:
        if from_store and self.queries is not None:
            super().reload(self.queries)
        with self._lock:
            totals = dict(self._spent)
        pipe = client.pipeline(transaction=False)
        for (scope, value, period), (start, spent) in totals.items():
            key = self.period_key(scope, value, period, start)
            pipe.hsetnx(key, "spent", nano(spent))
            pipe.expireat(key, self._expires_at(period, start))  # type: ignore[arg-type]
        pipe.execute()
        self._connect(client)
        log.info("aivitals: budgets seeded %d running totals into Redis", len(totals))

    def _connect(self, client: redis.Redis) -> None:
        """Learn the data's epoch (the sentinel's value), making one if Redis has none."""
        client.set(self.sentinel, uuid.uuid4().hex, nx=True)
        epoch = client.get(self.sentinel)
        self._epoch = epoch.decode() if isinstance(epoch, bytes) else None

    def _renew_live(self, client: redis.Redis) -> None:
        with self._live_lock:
            live = list(self._live.items())
        if not live:
            return
        keys = [key for _, pair in live for key in pair[1::2]]
        ids = [hold_id for hold_id, pair in live for _ in pair[1::2]]
        self._renew(keys=keys, args=[self.hold_ttl_ms, *ids], client=client)

    def _reconcile(self, client: redis.Redis) -> None:
        """Redis answers again. The sentinel tells what happened to its data: the epoch this
        process knew (or none known yet), Redis kept it, so add the deltas kept while it was
        down; no sentinel, Redis came back empty, so reseed from the store (which holds the
        outage's calls) and drop the deltas; another epoch, another process already reseeded
        after a restart, from the store: drop the deltas, they are in it."""
        found = client.get(self.sentinel)
        epoch = found.decode() if isinstance(found, bytes) else None
        if epoch is not None and self._epoch in (None, epoch):
            pipe = client.pipeline(transaction=False)
            for (key, expires), amount in self._deltas.items():
                pipe.hincrby(key, "spent", amount)
                pipe.expireat(key, expires)
            for hold_id, keys in self._releases:
                self._release(keys=list(keys), args=[hold_id], client=pipe)
            pipe.execute()
            self._epoch = epoch
            log.warning(
                "aivitals: Redis kept its data; added the spend of %d budget periods counted "
                "while it was down",
                len(self._deltas),
            )
        else:
            if epoch is None:
                self._seed(client, from_store=True)
                how = "the store" if self.queries is not None else "this process's totals"
                log.warning("aivitals: Redis came back empty; budgets reseeded from %s", how)
            else:
                self._epoch = epoch
                log.warning(
                    "aivitals: Redis came back empty and another process reseeded it; the "
                    "spend counted here while it was down is in the store it read"
                )
            with self._live_lock:
                self._live.clear()  # their holds went with the data: nothing left to renew
        self._deltas.clear()
        self._releases.clear()
