"""Rate limits: requests and tokens per minute, per key, user or team.

A sliding window of one minute, kept in memory per process (shared counters across gateway
replicas come with the Redis backend later). Requests are counted when they are let through;
tokens when the call ends (they are only known then), so a token limit refuses the requests that
come after the minute's tokens are spent.

>>> clock = [0.0]
>>> limiter = RateLimiter(clock=lambda: clock[0])
>>> limit = Limit(scope="team", value="search", requests_per_minute=2)
>>> [limiter.admit([limit]).allowed for _ in range(3)]
[True, True, False]
>>> clock[0] = 61.0
>>> limiter.admit([limit]).allowed
True
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

WINDOW_S = 60.0


@dataclass(frozen=True, slots=True)
class Limit:
    """A limit on one scope (``key``, ``user`` or ``team``) and value (which key, user, team)."""

    scope: str
    value: str
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether a request may go on; a refusal says why and when to retry.

    ``unavailable``: the limits could not be checked (a shared limiter whose Redis is down,
    under ``limits_on_failure = "closed"``), a 503 rather than the 429 of a reached limit.
    """

    allowed: bool
    retry_after_s: int = 0
    reason: str = ""
    unavailable: bool = False


class RateLimiter:
    """Sliding one-minute windows of request times and token counts. Thread-safe."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str], deque[float]] = {}
        self._tokens: dict[tuple[str, str], deque[tuple[float, int]]] = {}
        # A key's window is pruned only when that key is asked about, so a user who stopped
        # calling would keep an entry for good: once a minute, windows with nothing left in them
        # are dropped (a dropped window and an empty one decide alike), so what is kept is
        # bounded by the keys seen in the last two minutes, not by every key ever seen.
        self._swept_at = clock()

    def admit(self, limits: Sequence[Limit]) -> Decision:
        """Let a request through (and count it) unless one of the limits is reached."""
        now = self._clock()
        with self._lock:
            self._sweep(now)
            for limit in limits:
                refusal = self._check(limit, now)
                if refusal is not None:
                    return refusal
            for limit in limits:
                if limit.requests_per_minute is not None:
                    self._requests.setdefault((limit.scope, limit.value), deque()).append(now)
        return Decision(allowed=True)

    async def admit_async(self, limits: Sequence[Limit]) -> Decision:
        """`admit` as the gateway asks it: a shared limiter (Redis) answers over the network."""
        return self.admit(limits)

    def spend_tokens(self, limits: Sequence[Limit], tokens: int) -> None:
        """Count the tokens a finished call used against the limits that have a token budget."""
        if tokens <= 0:
            return
        now = self._clock()
        with self._lock:
            self._sweep(now)
            for limit in limits:
                if limit.tokens_per_minute is not None:
                    self._tokens.setdefault((limit.scope, limit.value), deque()).append(
                        (now, tokens)
                    )

    @property
    def keys_kept(self) -> int:
        """How many (scope, value) windows are held, of requests and of tokens."""
        with self._lock:
            return len(self._requests) + len(self._tokens)

    def _sweep(self, now: float) -> None:
        if now - self._swept_at < WINDOW_S:
            return
        self._swept_at = now
        horizon = now - WINDOW_S
        for key in [k for k, times in self._requests.items() if not times or times[-1] <= horizon]:
            del self._requests[key]
        for key in [k for k, spent in self._tokens.items() if not spent or spent[-1][0] <= horizon]:
            del self._tokens[key]

    def _check(self, limit: Limit, now: float) -> Decision | None:
        key = (limit.scope, limit.value)
        horizon = now - WINDOW_S
        if limit.requests_per_minute is not None:
            times = self._requests.get(key)
            if times is not None:
                while times and times[0] <= horizon:
                    times.popleft()
                if len(times) >= limit.requests_per_minute:
                    wait = times[0] + WINDOW_S - now
                    return Decision(
                        allowed=False,
                        retry_after_s=max(1, math.ceil(wait)),
                        reason=f"{limit.scope} {limit.value!r} is limited to "
                        f"{limit.requests_per_minute} requests per minute",
                    )
        if limit.tokens_per_minute is not None:
            spent = self._tokens.get(key)
            if spent is not None:
                while spent and spent[0][0] <= horizon:
                    spent.popleft()
                total = sum(tokens for _, tokens in spent)
                if total >= limit.tokens_per_minute:
                    wait = spent[0][0] + WINDOW_S - now
                    return Decision(
                        allowed=False,
                        retry_after_s=max(1, math.ceil(wait)),
                        reason=f"{limit.scope} {limit.value!r} is limited to "
                        f"{limit.tokens_per_minute} tokens per minute ({total} used)",
                    )
        return None


@dataclass(frozen=True, slots=True)
class LimitPolicy:
    """Which limits apply to a request: its key's own, one for every user, and per team.

    ``per_user`` and each ``per_team`` value are (requests per minute, tokens per minute), either
    of which may be None.
    """

    per_user: tuple[int | None, int | None] | None = None
    per_team: dict[str, tuple[int | None, int | None]] | None = None

    def limits(
        self,
        *,
        key_name: str | None,
        key_limits: tuple[int | None, int | None],
        user: str | None,
        team: str | None,
    ) -> list[Limit]:
        found: list[Limit] = []
        if key_name is not None and key_limits != (None, None):
            found.append(Limit("key", key_name, *key_limits))
        if user is not None and self.per_user is not None:
            found.append(Limit("user", user, *self.per_user))
        if team is not None and self.per_team and team in self.per_team:
            found.append(Limit("team", team, *self.per_team[team]))
        return found
