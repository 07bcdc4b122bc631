"""Shared rate limits (`aivitals.shared.limits`) against a real redis-server.

Several `SharedRateLimiter`s, each with its own link (as separate processes would have), admit
requests concurrently; the counts are exact across them, and Redis down takes the configured
policy. The in-memory limiter is the reproduction: three of them let three times the limit in.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar, cast

import pytest

from aivitals.gateway.limits import Limit, RateLimiter
from aivitals.shared.limits import OnFailure, SharedRateLimiter
from aivitals.shared.link import RedisLink
from aivitals.shared.writer import Writer
from tests.support.realservers import poll
from tests.support.redis_server import RawClients, RedisServer

raw = RawClients()


@pytest.fixture(autouse=True)
def _close_raw_clients() -> Iterator[None]:
    yield
    raw.close()


T = TypeVar("T")


class Limiters:
    """Limiters with a link each, as separate processes have, and one event loop to await on."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.made: list[tuple[RedisLink, Writer]] = []
        self.runner = asyncio.Runner()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.runner.run(coroutine)

    def make(self, on_failure: OnFailure = "open") -> SharedRateLimiter:
        link = RedisLink(self.url, retry_s=0.05, socket_timeout_s=0.5, connect_timeout_s=0.5)
        writer = Writer(link, tick_s=0.2)
        writer.start()
        self.made.append((link, writer))
        return SharedRateLimiter(link, writer, on_failure=on_failure)

    def close(self) -> None:
        for link, writer in self.made:
            writer.close()
            self.run(link.aclose())
            link.close()
        self.runner.close()


@pytest.fixture
def limiters(redis_db: str) -> Iterator[Limiters]:
    made = Limiters(redis_db)
    yield made
    made.close()


TEAM = Limit("team", "search", requests_per_minute=10)


async def admit_all(limiters: list[SharedRateLimiter], limits: list[Limit], n: int) -> list[bool]:
    decisions = await asyncio.gather(
        *(limiters[i % len(limiters)].admit_async(limits) for i in range(n))
    )
    return [d.allowed for d in decisions]


def test_in_memory_limiters_each_let_the_whole_limit_through() -> None:
    # The finding: one process's counters are not another's (effective limit = limit x replicas).
    local = [RateLimiter() for _ in range(3)]
    allowed = sum(local[i % 3].admit([TEAM]).allowed for i in range(60))
    assert allowed == 30


def test_three_limiters_let_exactly_the_limit_through_concurrently(limiters: Limiters) -> None:
    shared = [limiters.make() for _ in range(3)]
    allowed = limiters.run(admit_all(shared, [TEAM], 60))
    assert sum(allowed) == 10
    refused = limiters.run(shared[0].admit_async([TEAM]))
    assert not refused.allowed
    assert refused.reason == "team 'search' is limited to 10 requests per minute"
    assert 1 <= refused.retry_after_s <= 60


def test_a_request_refused_by_one_limit_is_counted_in_none(
    limiters: Limiters, redis_db: str
) -> None:
    shared = [limiters.make() for _ in range(3)]
    team = Limit("team", "t", requests_per_minute=8)
    users = [Limit("user", name, requests_per_minute=5) for name in ("ann", "bob")]

    async def both() -> list[list[bool]]:
        return list(
            await asyncio.gather(
                admit_all(shared, [users[0], team], 10), admit_all(shared, [users[1], team], 10)
            )
        )

    ann, bob = limiters.run(both())
    assert sum(ann) <= 5 and sum(bob) <= 5
    assert sum(ann) + sum(bob) == 8
    client = raw(redis_db)
    # All or none: each user's window holds exactly the requests let through.
    assert client.zcard("aivitals:rl:user:req:ann") == sum(ann)
    assert client.zcard("aivitals:rl:user:req:bob") == sum(bob)
    assert client.zcard("aivitals:rl:team:req:t") == 8


def test_tokens_spent_on_any_instance_refuse_the_next_request(limiters: Limiters) -> None:
    first, second = limiters.make(), limiters.make()
    limit = Limit("key", "k1", tokens_per_minute=1000)
    assert limiters.run(first.admit_async([limit])).allowed
    first.spend_tokens([limit], 600)
    assert first.writer.flush()
    assert limiters.run(second.admit_async([limit])).allowed
    second.spend_tokens([limit], 400)
    assert second.writer.flush()
    refused = limiters.run(first.admit_async([limit]))
    assert not refused.allowed
    assert refused.reason == "key 'k1' is limited to 1000 tokens per minute (1000 used)"


def test_the_window_slides_entries_older_than_a_minute_leave(
    limiters: Limiters, redis_db: str
) -> None:
    shared = limiters.make()
    limit = Limit("user", "u", requests_per_minute=2, tokens_per_minute=100)
    assert all(limiters.run(admit_all([shared], [limit], 2)))
    shared.spend_tokens([limit], 150)
    assert shared.writer.flush()
    assert not limiters.run(shared.admit_async([limit])).allowed
    # Age every entry by 61 s in Redis itself (no clock to inject: the script reads TIME).
    client = raw(redis_db)
    for key in ("aivitals:rl:user:req:u", "aivitals:rl:user:tok:u"):
        entries = client.zrange(key, 0, -1, withscores=True)
        for member, score in cast(list[tuple[bytes, float]], entries):
            client.zadd(key, {member: score - 61_000})
    assert limiters.run(shared.admit_async([limit])).allowed
    assert client.get("aivitals:rl:user:toksum:u") == b"0"


def test_redis_down_fails_open_by_default_and_limits_again_once_back(
    limiters: Limiters, redis_server: RedisServer
) -> None:
    shared = limiters.make()
    limit = Limit("team", "open", requests_per_minute=1)
    # Five at once: five pooled connections, dead sockets once Redis restarts.
    assert sum(limiters.run(admit_all([shared], [limit], 5))) == 1
    redis_server.stop()
    assert all(limiters.run(admit_all([shared], [limit], 5)))
    assert not shared.link.up
    metrics = shared.link.metrics.registry
    assert metrics.get_sample_value("aivitals_redis_up") == 0
    assert metrics.get_sample_value("aivitals_redis_fallbacks_total", {"feature": "limits"}) == 5
    errors = metrics.get_sample_value("aivitals_redis_errors_total", {"feature": "limits"})
    # The five were under way together when the first failed; once down, none tries Redis.
    assert errors is not None and 1 <= errors <= 5
    assert limiters.run(shared.admit_async([limit])).allowed
    assert metrics.get_sample_value("aivitals_redis_errors_total", {"feature": "limits"}) == errors
    redis_server.start()
    poll("the link back up", lambda: shared.link.up)
    # Redis came back empty (no persistence): the window starts again, and counts, on fresh
    # connections (a dead pooled one would fail once and let its request through).
    assert sum(limiters.run(admit_all([shared], [limit], 5))) == 1
    assert shared.link.up


def test_redis_down_fails_closed_with_503_and_retry_after(
    limiters: Limiters, redis_server: RedisServer
) -> None:
    shared = limiters.make("closed")
    redis_server.stop(kill=True)
    refused = limiters.run(shared.admit_async([TEAM]))
    assert (refused.allowed, refused.unavailable, refused.retry_after_s) == (False, True, 1)
    assert "limits_on_failure = closed" in refused.reason


def test_a_hung_redis_costs_one_timeout_then_requests_skip_it(
    limiters: Limiters, redis_server: RedisServer
) -> None:
    shared = limiters.make()
    assert limiters.run(shared.admit_async([TEAM])).allowed
    redis_server.freeze()
    try:
        assert all(limiters.run(admit_all([shared], [TEAM], 20)))
        errors = shared.link.metrics.registry.get_sample_value(
            "aivitals_redis_errors_total", {"feature": "limits"}
        )
        # Only the requests already waiting when the first timed out paid the timeout.
        assert errors is not None and 1 <= errors <= 20
        assert not shared.link.up
        assert limiters.run(shared.admit_async([TEAM])).allowed
        assert (
            shared.link.metrics.registry.get_sample_value(
                "aivitals_redis_errors_total", {"feature": "limits"}
            )
            == errors
        )
    finally:
        redis_server.thaw()
