"""When to try again: one back-off policy for the store sink, the HTTP exporter and alert delivery.

Exponential back-off (``first_s``, doubling, at most ``max_s``), shortened at random by up to
``jitter`` of itself so that many processes do not retry in step, and a server's ``Retry-After``
honoured when it gives one. `RetryPolicy` is the pure rule (a delay for the n-th failure);
`Backoff` keeps one failing thing's state on an injected clock.

Why not `tenacity` or `stamina`: both retry by sleeping inside a call. Nothing here may sleep:
the store sink and the exporter keep working (buffering, spooling) between attempts, and the
alert engine persists each delivery's attempts across restarts. What they share is the schedule,
which is these few lines.

>>> policy = RetryPolicy(first_s=1.0, max_s=8.0)
>>> [policy.delay(n) for n in range(1, 6)]
[1.0, 2.0, 4.0, 8.0, 8.0]
>>> policy.delay(3, retry_after_s=30.0)
30.0
>>> now = [100.0]
>>> backoff = Backoff(policy, clock=lambda: now[0])
>>> backoff.ready, backoff.failed(), backoff.ready, backoff.wait_s
(True, 1.0, False, 1.0)
>>> now[0] += 1.0
>>> backoff.ready, backoff.failed(), backoff.failures
(True, 2.0, 2)
>>> backoff.succeeded(); backoff.ready, backoff.failures
(True, 0)
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

MAX_RETRY_AFTER_S = 3600.0
"""A server asking for a longer wait is waited on this long, then asked again."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Back-off of failed attempts: ``first_s``, doubling up to ``max_s``, ``max_attempts`` tries.

    ``jitter`` (0 to 1) shortens each delay by a random share up to itself. ``max_attempts``
    None means no limit (the caller keeps the items and tries for as long as it runs).
    """

    first_s: float = 1.0
    max_s: float = 300.0
    max_attempts: int | None = 12
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if not 0 < self.first_s <= self.max_s:
            raise ValueError(
                f"back-off needs 0 < first_s <= max_s, got {self.first_s} and {self.max_s}"
            )
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be between 0 and 1, got {self.jitter}")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")

    def delay(
        self,
        attempts: int,
        *,
        retry_after_s: float | None = None,
        rng: Callable[[], float] = random.random,
    ) -> float:
        """Seconds to wait after the ``attempts``-th failure in a row (a server's word wins)."""
        if retry_after_s is not None:
            return max(0.0, retry_after_s)
        base = min(self.max_s, self.first_s * 2 ** max(0, attempts - 1))
        return float(base * (1.0 - self.jitter * rng()) if self.jitter else base)

    def gave_up(self, attempts: int) -> bool:
        """Whether ``attempts`` failures exhaust the policy."""
        return self.max_attempts is not None and attempts >= self.max_attempts


class Backoff:
    """One failing thing's back-off: when it may be tried again, on an injected clock.

    Not thread-safe by itself: its owner holds its own lock around it.
    """

    __slots__ = ("_clock", "_rng", "failures", "policy", "retry_at")

    def __init__(
        self,
        policy: RetryPolicy,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.policy = policy
        self.failures = 0
        self.retry_at = float("-inf")
        self._clock = clock
        self._rng = rng

    @property
    def ready(self) -> bool:
        """Whether the back-off has elapsed (always, before any failure)."""
        return self._clock() >= self.retry_at

    @property
    def wait_s(self) -> float:
        """Seconds until it has (0 when ready)."""
        return max(0.0, self.retry_at - self._clock())

    def failed(self, *, retry_after_s: float | None = None) -> float:
        """Count a failure; returns the delay before the next attempt."""
        self.failures += 1
        delay_s = self.policy.delay(self.failures, retry_after_s=retry_after_s, rng=self._rng)
        self.retry_at = self._clock() + delay_s
        return delay_s

    def succeeded(self) -> None:
        """Forget the failures: the next one starts from ``first_s`` again."""
        self.failures = 0
        self.retry_at = float("-inf")


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds from now: a number of seconds or an HTTP date (RFC 9110 §10.2.3).

    None when absent or unreadable; at most `MAX_RETRY_AFTER_S`.

    >>> parse_retry_after("30"), parse_retry_after("soon"), parse_retry_after(None)
    (30.0, None, None)
    >>> parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT")
    0.0
    """
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)
