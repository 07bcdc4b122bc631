"""The exact response cache shared by every gateway process, bounded in Redis.

`SharedResponseCache` keeps `aivitals.gateway.cache.ResponseCache`'s contract (same keys, same
answers, a TTL and a total size bound) in Redis, so an answer cached by one replica is a hit on
every other. An entry is a string key with the TTL as its expiry; a sorted set orders entries
by last use (Redis time, in microseconds) and a hash holds their sizes beside a byte counter. `get_async` is one
script (the entry, and its last use moved up); `put` is queued to the writer thread, whose script
stores the entry and evicts the least recently used until the total fits ``max_bytes``. An entry
that expired by TTL keeps its bytes counted until eviction reaches it, so the counter can only
overstate what is held and the bound holds.

While Redis is down the cache is skipped: a lookup is a miss, a put is dropped (counted in
``aivitals_redis_fallbacks_total{feature="cache"}``).
"""

from __future__ import annotations

from decimal import Decimal

import msgspec
import redis
import redis.asyncio

from aivitals.gateway.cache import CachedAnswer, ResponseCache
from aivitals.shared.link import RedisLink, Unavailable
from aivitals.shared.writer import Write, Writer

# KEYS: entry, lru set, sizes hash. ARGV: the member (cache key). Returns the entry or nil.
GET = """
local value = redis.call('GET', KEYS[1])
if not value then return false end
local t = redis.call('TIME')
redis.call('ZADD', KEYS[2], 'XX', tonumber(t[1]) * 1000000 + tonumber(t[2]), ARGV[1])
return value
"""

# KEYS: entry, lru set, sizes hash, byte counter. ARGV: member, value, size, ttl (ms), max bytes,
# the entry key prefix (to name the evicted).
PUT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local old = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0')
local size = tonumber(ARGV[3])
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[4])
redis.call('ZADD', KEYS[2], now, ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], size)
local total = redis.call('INCRBY', KEYS[4], size - old)
local max = tonumber(ARGV[5])
while total > max do
  local oldest = redis.call('ZPOPMIN', KEYS[2])
  if #oldest == 0 then break end
  local member = oldest[1]
  local freed = tonumber(redis.call('HGET', KEYS[3], member) or '0')
  redis.call('HDEL', KEYS[3], member)
  redis.call('DEL', ARGV[6] .. member)
  total = redis.call('DECRBY', KEYS[4], freed)
end
return total
"""

_Entry = tuple[list[bytes], str, bool, str | None, str | None, str | None]
_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(_Entry).decode


class SharedResponseCache(ResponseCache):
    """`ResponseCache` in Redis (see the module's docstring). ``len()`` and ``bytes`` are the
    shared totals as the writer thread last read them (no network when scraped)."""

    def __init__(
        self, link: RedisLink, writer: Writer, *, ttl_s: float = 3600.0, max_bytes: int = 64 << 20
    ) -> None:
        super().__init__(ttl_s=ttl_s, max_bytes=max_bytes)
        self.link = link
        self.writer = writer
        self._entries_seen = 0
        self._get = redis.asyncio.Redis().register_script(GET)
        self._put = link.sync.register_script(PUT)
        self._lru = link.key("cache", "lru")
        self._sizes = link.key("cache", "sizes")
        self._total = link.key("cache", "bytes")
        self._entry_prefix = link.key("cache", "e", "")
        writer.ticks.append(self.refresh)

    def __len__(self) -> int:
        return self._entries_seen

    def get(self, key: str) -> CachedAnswer | None:
        raise RuntimeError("a shared cache answers over the network: await get_async")

    async def get_async(self, key: str) -> CachedAnswer | None:
        """The answer under ``key`` from Redis (one script); None on a miss or while it is down."""
        keys = [self._entry_prefix + key, self._lru, self._sizes]
        try:
            raw = await self.link.run(
                "cache", lambda client: self._get(keys=keys, args=[key], client=client)
            )
        except Unavailable:
            self.link.metrics.fallback("cache")
            return None
        if raw is None:
            return None
        chunks, media_type, stream, cost, model, finish = _decode(raw)
        return CachedAnswer(
            chunks=tuple(chunks),
            media_type=media_type,
            stream=stream,
            cost_usd=Decimal(cost) if cost is not None else None,
            response_model=model,
            finish_reason=finish,
        )

    def put(self, key: str, answer: CachedAnswer) -> bool:
        """Queue ``answer`` for Redis; False when it alone is larger than the whole cache."""
        size = answer.size
        if size > self.max_bytes:
            return False
        value = _encode(
            (
                list(answer.chunks),
                answer.media_type,
                answer.stream,
                None if answer.cost_usd is None else str(answer.cost_usd),
                answer.response_model,
                answer.finish_reason,
            )
        )
        keys = [self._entry_prefix + key, self._lru, self._sizes, self._total]
        args: list[str | int | bytes] = [
            key,
            value,
            size,
            int(self.ttl_s * 1000),
            self.max_bytes,
            self._entry_prefix,
        ]
        self.writer.put(Write("cache", lambda pipe: self._put(keys=keys, args=args, client=pipe)))
        return True

    def refresh(self, client: redis.Redis) -> None:
        """Read the shared entry count and bytes (the writer's tick)."""
        pipe = client.pipeline(transaction=False)
        pipe.zcard(self._lru)
        pipe.get(self._total)
        entries, total = pipe.execute()
        self._entries_seen = int(entries)
        self.bytes = int(total or 0)
