"""The shared exact cache (`aivitals.shared.cache`) against a real redis-server.

An answer put by one instance is a hit on another; the total size bound holds in Redis (least
recently used go first); a TTL expires entries; Redis down is a miss and a dropped put.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator
from decimal import Decimal
from typing import Any, TypeVar

import pytest

from aivitals.gateway.cache import CachedAnswer, ResponseCache, cache_key
from aivitals.shared.cache import SharedResponseCache
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


def answer(text: str, size: int = 0) -> CachedAnswer:
    body = ('{"answer": "' + text + '"}').encode() + b" " * size
    return CachedAnswer(
        chunks=(body, b"data: [DONE]\n\n"),
        media_type="text/event-stream",
        stream=True,
        cost_usd=Decimal("0.00042"),
        response_model="gpt-4o-mini-2024-07-18",
        finish_reason="stop",
    )


class Caches:
    def __init__(self, url: str) -> None:
        self.url = url
        self.made: list[SharedResponseCache] = []
        self.runner = asyncio.Runner()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.runner.run(coroutine)

    def make(self, **options: Any) -> SharedResponseCache:
        link = RedisLink(self.url, retry_s=0.05, socket_timeout_s=0.5, connect_timeout_s=0.5)
        writer = Writer(link, tick_s=0.05)
        writer.start()
        cache = SharedResponseCache(link, writer, **options)
        self.made.append(cache)
        return cache

    def close(self) -> None:
        for cache in self.made:
            cache.writer.close()
            self.run(cache.link.aclose())
            cache.link.close()
        self.runner.close()


@pytest.fixture
def caches(redis_db: str) -> Iterator[Caches]:
    made = Caches(redis_db)
    yield made
    made.close()


def key(n: int) -> str:
    return cache_key("chat", {"model": "m", "messages": [{"role": "user", "content": str(n)}]})


def test_in_memory_caches_do_not_share_their_answers() -> None:
    first, second = ResponseCache(), ResponseCache()
    first.put(key(1), answer("one"))
    assert second.get(key(1)) is None


def test_an_answer_put_by_one_instance_is_a_hit_on_another(caches: Caches) -> None:
    first, second = caches.make(), caches.make()
    assert caches.run(second.get_async(key(1))) is None
    assert first.put(key(1), answer("one"))
    assert first.writer.flush()
    assert caches.run(second.get_async(key(1))) == answer("one")


def test_the_size_bound_holds_in_redis_least_recently_used_first(
    caches: Caches, redis_db: str
) -> None:
    size = answer("x", 1000).size
    first, second = caches.make(max_bytes=3 * size), caches.make(max_bytes=3 * size)
    for n in range(3):
        putter = first if n % 2 else second
        putter.put(key(n), answer("x", 1000))
        assert putter.writer.flush()
    assert caches.run(first.get_async(key(0))) is not None  # 0 is now the most recently used
    second.put(key(3), answer("x", 1000))
    assert second.writer.flush()
    held = {n for n in range(4) if caches.run(first.get_async(key(n))) is not None}
    assert held == {0, 2, 3}  # 1 was the least recently used
    client = raw(redis_db)
    assert int(client.get("aivitals:cache:bytes") or 0) == 3 * size
    assert client.zcard("aivitals:cache:lru") == 3
    poll("the figures read back", lambda: (len(first), first.bytes) == (3, 3 * size))


def test_an_answer_larger_than_the_cache_is_refused(caches: Caches) -> None:
    cache = caches.make(max_bytes=500)
    assert not cache.put(key(1), answer("x", 1000))


def test_entries_expire_after_the_ttl(caches: Caches, redis_db: str) -> None:
    cache = caches.make(ttl_s=60)
    cache.put(key(1), answer("one"))
    assert cache.writer.flush()
    ttl_ms = raw(redis_db).pttl("aivitals:cache:e:" + key(1))
    assert 0 < ttl_ms <= 60_000
    raw(redis_db).pexpire("aivitals:cache:e:" + key(1), 1)
    poll("the entry gone", lambda: caches.run(cache.get_async(key(1))) is None)


def test_redis_down_skips_the_cache(caches: Caches, redis_server: RedisServer) -> None:
    cache = caches.make()
    cache.put(key(1), answer("one"))
    assert cache.writer.flush()
    redis_server.stop()
    assert caches.run(cache.get_async(key(1))) is None
    cache.put(key(2), answer("two"))
    assert cache.writer.flush()
    metrics = cache.link.metrics.registry
    assert metrics.get_sample_value("aivitals_redis_fallbacks_total", {"feature": "cache"}) == 2
    redis_server.start()
    poll("the link back up", lambda: cache.link.up)
    assert caches.run(cache.get_async(key(2))) is None  # dropped, not queued for later
