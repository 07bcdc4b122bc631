"""One Redis for the shared state: its clients, whether it answers, and the writer thread.

`RedisLink` holds two clients of the same server: an asyncio one for what a request awaits on
the event loop (one admission script, one cache GET), and a synchronous one owned by a single
background thread (`aivitals.shared.writer.Writer`) for what must never block a request (spend,
hold releases, token counts, cache puts), pipelined in the order they were queued.

Timeouts are short (100 ms to connect or to answer, by default) and redis-py's retries are
off, so a dead or hung Redis costs a request one timeout at most: the first failure marks the
link down, and while it is down requests skip Redis altogether and take each feature's policy
(`aivitals.shared.policy`). The writer thread pings it every ``retry_s``; when it answers, the
registered reconcilers run (budgets replay or reseed, docs/shared-state.md) and the link is up
again. Each transition is one log line and moves ``aivitals_redis_up``.

>>> link = RedisLink("redis://127.0.0.1:1/0", connect_timeout_s=0.05)
>>> link.up, link.key("budget", "x")
(True, 'aivitals:budget:x')
>>> link.close()
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis
import redis.asyncio
from redis.backoff import NoBackoff
from redis.retry import Retry

from aivitals.config import ConfigError
from aivitals.shared.metrics import SharedMetrics

log = logging.getLogger("aivitals.shared")

T = TypeVar("T")

FAILURES: tuple[type[BaseException], ...] = (redis.RedisError, OSError, asyncio.TimeoutError)
"""What a Redis that is down, hung or refusing looks like to a client."""


class Unavailable(Exception):
    """Redis did not answer (or is known to be down): take the feature's fallback."""


class RedisLink:
    """The shared state's Redis: clients, health, metrics and key names (``key_prefix``)."""

    def __init__(
        self,
        url: str,
        *,
        key_prefix: str = "aivitals:",
        connect_timeout_s: float = 0.1,
        socket_timeout_s: float = 0.1,
        retry_s: float = 0.5,
        metrics: SharedMetrics | None = None,
    ) -> None:
        self.url = url
        self.prefix = key_prefix
        self.retry_s = retry_s
        self.metrics = metrics or SharedMetrics()
        self._options: dict[str, Any] = {
            "socket_connect_timeout": connect_timeout_s,
            "socket_timeout": socket_timeout_s,
        }
        # No retries inside redis-py: a failure must reach us at once to take the fallback.
        try:
            self.sync = redis.Redis.from_url(url, retry=Retry(NoBackoff(), 0), **self._options)
        except ValueError as exc:  # redis-py's word for a URL it cannot read
            raise ConfigError(f"redis url {url!r}: {exc}") from None
        self._async: tuple[asyncio.AbstractEventLoop, redis.asyncio.Redis] | None = None
        self._lock = threading.Lock()
        self._up = True
        self._stale = False
        self._closing: set[asyncio.Task[None]] = set()
        self._since = time.monotonic()
        self.last_error = ""
        self.metrics.up.set(1)

    def key(self, *parts: str) -> str:
        """A key under the prefix: ``key("budget", "x")`` is ``aivitals:budget:x``."""
        return self.prefix + ":".join(parts)

    @property
    def up(self) -> bool:
        return self._up

    def async_client(self) -> redis.asyncio.Redis:
        """The asyncio client of the running loop (one per loop: its connections are the loop's)."""
        loop = asyncio.get_running_loop()
        held = self._async
        if held is not None and held[0] is loop and self._stale:
            # Redis was down: its pooled connections may be dead sockets to a server that
            # restarted, each of which would fail once (and fail open). Start a fresh pool.
            closing = loop.create_task(held[1].aclose())
            self._closing.add(closing)  # a reference until done: the loop keeps only weak ones
            closing.add_done_callback(self._closing.discard)
            held = None
        self._stale = False
        if held is None or held[0] is not loop:
            client = redis.asyncio.Redis.from_url(
                self.url, retry=redis.asyncio.retry.Retry(NoBackoff(), 0), **self._options
            )
            self._async = held = (loop, client)
        return held[1]

    async def run(self, feature: str, command: Callable[[redis.asyncio.Redis], Awaitable[T]]) -> T:
        """Await ``command`` on the loop's client, timed; `Unavailable` when Redis is down or
        fails now (the link is then marked down until the writer thread's ping succeeds)."""
        if not self._up:
            raise Unavailable(self.last_error)
        client = self.async_client()
        started = time.perf_counter()
        try:
            result = await command(client)
        except FAILURES as exc:
            self.failed(feature, exc)
            raise Unavailable(str(exc)) from exc
        self.metrics.observe(feature, time.perf_counter() - started)
        return result

    def failed(self, feature: str, exc: BaseException) -> None:
        """Count a failed command of ``feature`` and mark the link down."""
        self.metrics.error(feature)
        self.mark_down(f"{type(exc).__name__}: {exc}".rstrip(": "))

    def mark_down(self, reason: str) -> None:
        with self._lock:
            self.last_error = reason
            if not self._up:
                return
            self._up = False
            self._since = time.monotonic()
        self.metrics.up.set(0)
        log.warning(
            "aivitals: Redis at %s is down (%s); shared limits, budgets and cache take their "
            "fallback policy until it answers",
            self.safe_url,
            reason,
        )

    def mark_up(self) -> None:
        with self._lock:
            if self._up:
                return
            self._up = True
            self._stale = True
            down_s = time.monotonic() - self._since
            self._since = time.monotonic()
        self.metrics.up.set(1)
        log.warning("aivitals: Redis at %s answers again after %.1f s", self.safe_url, down_s)

    def ping(self) -> bool:
        """One synchronous PING (the writer thread's probe)."""
        try:
            return bool(self.sync.ping())
        except FAILURES as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            return False

    @property
    def safe_url(self) -> str:
        """The URL without its password, for logs and ``/readyz``."""
        parsed = self.sync.connection_pool.connection_kwargs
        host = parsed.get("host", "?")
        port = parsed.get("port", "?")
        path = parsed.get("path")
        return f"redis://{host}:{port}/{parsed.get('db', 0)}" if path is None else f"unix:{path}"

    async def aclose(self) -> None:
        """Close the running loop's client (before that loop ends)."""
        held, self._async = self._async, None
        if held is not None:
            await held[1].aclose()

    def close(self) -> None:
        """Close the synchronous client (the asyncio one: `aclose`, on its loop)."""
        self.sync.close()
