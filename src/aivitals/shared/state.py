"""`SharedState`: the Redis-backed limiter, budget ledger and cache of one gateway process.

Built from the gateway's settings and a Redis URL (``serve --redis URL`` or ``[redis] url``):
every part shares one `RedisLink` and one `Writer` thread. Without Redis the gateway keeps its
in-memory parts, as a single process does today.

>>> from aivitals.gateway.config import parse_gateway_config
>>> settings = parse_gateway_config({"redis": {"url": "redis://127.0.0.1:1/0"}})
>>> state = SharedState.open(settings)
>>> state.readiness()
'redis://127.0.0.1:1/0 up; if it goes down: limits fail open, budgets count locally, cache skipped'
>>> state.close()
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import CollectorRegistry

from aivitals.config import ConfigError
from aivitals.gateway.config import GatewayConfig, RedisSettings
from aivitals.model import utc_now
from aivitals.shared.budgets import SharedBudgetLedger
from aivitals.shared.cache import SharedResponseCache
from aivitals.shared.limits import SharedRateLimiter
from aivitals.shared.link import RedisLink
from aivitals.shared.writer import Writer


@dataclass
class SharedState:
    """The shared parts, their link and writer; `close` flushes and stops the writer."""

    link: RedisLink
    writer: Writer
    limiter: SharedRateLimiter
    ledger: SharedBudgetLedger
    cache: SharedResponseCache | None
    cache_routes: frozenset[str]

    @classmethod
    def open(
        cls,
        settings: GatewayConfig,
        url: str | None = None,
        *,
        clock: Callable[[], datetime] = utc_now,
    ) -> SharedState:
        """The shared parts for ``settings`` on Redis at ``url`` (default: ``[redis] url``).

        Nothing is sent yet: the writer starts with `start` (the serve command calls it).
        """
        options = settings.redis or RedisSettings()
        target = url or options.url
        if target is None:
            raise ConfigError("[redis] needs a url (or pass serve --redis URL)")
        link = RedisLink(
            target,
            key_prefix=options.key_prefix,
            connect_timeout_s=options.connect_timeout_ms / 1000,
            socket_timeout_s=options.socket_timeout_ms / 1000,
            retry_s=options.retry_s,
        )
        writer = Writer(link)
        ledger = SharedBudgetLedger(
            [b.budget() for b in settings.budgets],
            link,
            writer,
            timezone=settings.timezone,
            clock=clock,
            hold_ttl_s=options.hold_ttl_s,
        )
        cache = None
        routes: frozenset[str] = frozenset()
        if settings.cache is not None:
            _, routes = settings.build_cache()
            cache = SharedResponseCache(
                link,
                writer,
                ttl_s=settings.cache.ttl_s,
                max_bytes=int(settings.cache.max_mb * 1024**2),
            )
        limiter = SharedRateLimiter(link, writer, on_failure=options.limits_on_failure)
        return cls(link, writer, limiter, ledger, cache, routes)

    @property
    def registry(self) -> CollectorRegistry:
        """The shared state's metrics (``aivitals_redis_*``), for ``/metrics``."""
        return self.link.metrics.registry

    def start(self) -> None:
        self.writer.start()

    def readiness(self) -> str:
        """``/readyz``'s line: whether Redis answers and the policy in effect (never raises:
        Redis down degrades this process, it does not stop it serving)."""
        policy = f"limits fail {self.limiter.on_failure}, budgets count locally, cache skipped"
        if self.link.up:
            return f"{self.link.safe_url} up; if it goes down: {policy}"
        return f"{self.link.safe_url} down ({self.link.last_error}); in effect: {policy}"

    def close(self) -> None:
        self.writer.close()
        self.link.close()
