"""Rate limits shared by every gateway process: exact sliding windows in Redis, one script.

`SharedRateLimiter` answers `admit_async` with one Lua script (one round trip) that checks every
limit of the request (its key's, its user's, its team's; requests and tokens) and counts the
request in all of them or none, with the time taken from Redis (``TIME``) so replicas whose
clocks differ still share one window. A request window is a sorted set of request ids scored by
their time; a token window is a sorted set of spends (``id:tokens``) with a running sum, pruned
as entries leave the minute, so a check costs the entries that expired, not the whole window.
Tokens are counted when a call ends (`spend_tokens`, queued to the writer thread), as in
`aivitals.gateway.limits.RateLimiter`, whose semantics (and messages) this keeps.

Why not the ``limits`` package (5.8, read before writing this): its Redis moving window checks
one limit per call (three limits are three round trips, and a request refused by the third is
already counted by the first two), takes its timestamp from the client's clock, and stores a
hit of cost N as N list entries (a 500,000 tokens-per-minute limit is a list of up to 500,000
entries, each call pushing its token count as that many elements); its sliding window counter is
an approximation (a weighted previous window), not exact. A 40-line script does all limits at
once, exactly, on Redis time.

While Redis is down the policy is ``on_failure``: ``"open"`` lets requests through uncounted,
``"closed"`` answers 503 with Retry-After (`unavailable`); both count in
``aivitals_redis_fallbacks_total{feature="limits"}``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Literal

import redis.asyncio

from aivitals.gateway.limits import WINDOW_S, Decision, Limit, RateLimiter
from aivitals.shared.link import RedisLink, Unavailable
from aivitals.shared.writer import Write, Writer

OnFailure = Literal["open", "closed"]
_WINDOW_MS = int(WINDOW_S * 1000)

# KEYS: per limit, its request set, token set and token sum. ARGV: window (ms), the request's
# id, then per limit its requests and tokens per minute (-1: none). Returns {1} when admitted,
# else {0, the limit's index (1-based), 1 for requests or 2 for tokens, ms to wait, tokens used}.
ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
local horizon = now - window
local n = #KEYS / 3
for i = 1, n do
  local rpm = tonumber(ARGV[1 + 2 * i])
  local tpm = tonumber(ARGV[2 + 2 * i])
  if rpm >= 0 then
    local rkey = KEYS[3 * i - 2]
    redis.call('ZREMRANGEBYSCORE', rkey, '-inf', horizon)
    if redis.call('ZCARD', rkey) >= rpm then
      local oldest = redis.call('ZRANGE', rkey, 0, 0, 'WITHSCORES')
      return {0, i, 1, tonumber(oldest[2]) + window - now, 0}
    end
  end
  if tpm >= 0 then
    local tkey = KEYS[3 * i - 1]
    local skey = KEYS[3 * i]
    local gone = redis.call('ZRANGEBYSCORE', tkey, '-inf', horizon)
    if #gone > 0 then
      local freed = 0
      for _, member in ipairs(gone) do
        freed = freed + tonumber(string.match(member, ':(%d+)$'))
      end
      redis.call('ZREMRANGEBYSCORE', tkey, '-inf', horizon)
      redis.call('DECRBY', skey, freed)
    end
    local used = tonumber(redis.call('GET', skey) or '0')
    if used >= tpm then
      local oldest = redis.call('ZRANGE', tkey, 0, 0, 'WITHSCORES')
      return {0, i, 2, tonumber(oldest[2]) + window - now, used}
    end
  end
end
for i = 1, n do
  if tonumber(ARGV[1 + 2 * i]) >= 0 then
    redis.call('ZADD', KEYS[3 * i - 2], now, ARGV[2])
    redis.call('PEXPIRE', KEYS[3 * i - 2], window)
  end
end
return {1}
"""

# KEYS: per limit with a token budget, its token set and sum. ARGV: window (ms), the spend's id,
# the tokens.
SPEND = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local member = ARGV[2] .. ':' .. ARGV[3]
for i = 1, #KEYS, 2 do
  redis.call('ZADD', KEYS[i], now, member)
  redis.call('INCRBY', KEYS[i + 1], ARGV[3])
  redis.call('PEXPIRE', KEYS[i], ARGV[1])
  redis.call('PEXPIRE', KEYS[i + 1], ARGV[1])
end
return 1
"""


def unavailable(retry_after_s: int) -> Decision:
    """The refusal of a closed policy while Redis is down: the gateway answers it with 503."""
    return Decision(
        allowed=False,
        retry_after_s=retry_after_s,
        reason="rate limits cannot be checked right now (the shared state's Redis is down) "
        "and this gateway refuses unchecked requests (limits_on_failure = closed); retry later",
        unavailable=True,
    )


class SharedRateLimiter(RateLimiter):
    """`RateLimiter` over Redis: the same limits, exact across every process sharing ``link``.

    Only the awaitable `admit_async` is shared; the synchronous `admit` (kept for callers off
    the event loop) refuses to run, since it would block on the network.
    """

    def __init__(self, link: RedisLink, writer: Writer, *, on_failure: OnFailure = "open") -> None:
        super().__init__()
        self.link = link
        self.writer = writer
        self.on_failure: OnFailure = on_failure
        self._admit = redis.asyncio.Redis().register_script(ADMIT)
        self._spend = link.sync.register_script(SPEND)

    def _keys(self, limit: Limit) -> tuple[str, str, str]:
        base = ("rl", limit.scope)
        return (
            self.link.key(*base, "req", limit.value),
            self.link.key(*base, "tok", limit.value),
            self.link.key(*base, "toksum", limit.value),
        )

    def admit(self, limits: Sequence[Limit]) -> Decision:
        raise RuntimeError("a shared rate limiter answers over the network: await admit_async")

    async def admit_async(self, limits: Sequence[Limit]) -> Decision:
        """Check and count the request in every limit at once (one script, one round trip)."""
        keys = [key for limit in limits for key in self._keys(limit)]
        args: list[int | str] = [_WINDOW_MS, uuid.uuid4().hex]
        for limit in limits:
            args.append(-1 if limit.requests_per_minute is None else limit.requests_per_minute)
            args.append(-1 if limit.tokens_per_minute is None else limit.tokens_per_minute)
        try:
            reply = await self.link.run(
                "limits", lambda client: self._admit(keys=keys, args=args, client=client)
            )
        except Unavailable:
            self.link.metrics.fallback("limits")
            if self.on_failure == "closed":
                return unavailable(max(1, round(self.link.retry_s)))
            return Decision(allowed=True)
        if int(reply[0]) == 1:
            return Decision(allowed=True)
        _, index, kind, wait_ms, used = (int(part) for part in reply)
        limit = limits[index - 1]
        retry_after_s = max(1, -(-wait_ms // 1000))
        if kind == 1:
            reason = (
                f"{limit.scope} {limit.value!r} is limited to "
                f"{limit.requests_per_minute} requests per minute"
            )
        else:
            reason = (
                f"{limit.scope} {limit.value!r} is limited to "
                f"{limit.tokens_per_minute} tokens per minute ({used} used)"
            )
        return Decision(allowed=False, retry_after_s=retry_after_s, reason=reason)

    def spend_tokens(self, limits: Sequence[Limit], tokens: int) -> None:
        """Count a finished call's tokens (queued: never blocks; dropped while Redis is down)."""
        keys = [
            key
            for limit in limits
            if limit.tokens_per_minute is not None
            for key in self._keys(limit)[1:]
        ]
        if tokens <= 0 or not keys:
            return
        args: list[int | str] = [_WINDOW_MS, uuid.uuid4().hex, tokens]
        self.writer.put(
            Write("limits", lambda pipe: self._spend(keys=keys, args=args, client=pipe))
        )
