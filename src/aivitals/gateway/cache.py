"""The exact response cache: the same request body gets the same answer, without the upstream.

Opt-in: per request with ``X-Aivitals-Cache: on`` (``off`` skips a cached route), or per route in
the config (``cache.routes = ["embeddings"]``). The key is a SHA-256 of the operation and the
request body with its keys sorted, minus the OpenAI ``user`` field (who asks does not change the
answer). ``stream`` is part of the body, so a stream and a whole answer are cached apart, and a
cached stream is replayed as the same events. Only complete, successful answers are kept.

Entries live in memory, bounded by total bytes (least recently used go first) and by a TTL.

>>> cache = ResponseCache(ttl_s=60, max_bytes=1_000, clock=lambda: 0.0)
>>> key = cache_key("chat", {"model": "m", "messages": [{"role": "user", "content": "hi"}]})
>>> cache.put(key, CachedAnswer(chunks=(b'{"ok": true}',), media_type="application/json",
...                             stream=False, cost_usd=None, response_model="m"))
True
>>> cache.get(key).chunks, cache.get("other")
((b'{"ok": true}',), None)
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import msgspec

from aivitals.config import ConfigError

_canonical = msgspec.json.Encoder(order="sorted").encode
_IGNORED = frozenset({"user"})
_ENTRY_OVERHEAD = 200  # bytes charged per entry on top of its body, so tiny answers are bounded too


def cache_key(operation: str, body: Mapping[str, Any], *, scope: str = "") -> str:
    """The key of a request: its operation, the tenant it is cached for (``scope``: the team,
    user or key whose answers it may get; empty for everyone) and its body, keys sorted,
    without ``user``."""
    kept = {name: value for name, value in body.items() if name not in _IGNORED}
    digest = hashlib.sha256(operation.encode())
    digest.update(b"\0")
    if scope:
        digest.update(scope.encode())
        digest.update(b"\0")
    digest.update(_canonical(kept))
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """An answer as the client received it: one chunk for a whole body, the events of a stream.

    ``cost_usd`` is what the answer cost when it was fetched: what a hit saves.
    """

    chunks: tuple[bytes, ...]
    media_type: str
    stream: bool
    cost_usd: Decimal | None
    response_model: str | None = None
    finish_reason: str | None = None

    @property
    def size(self) -> int:
        return sum(len(chunk) for chunk in self.chunks) + _ENTRY_OVERHEAD


class ResponseCache:
    """Answers by key, evicted by age (``ttl_s``) and by total size (``max_bytes``). Thread-safe."""

    def __init__(
        self,
        *,
        ttl_s: float = 3600.0,
        max_bytes: int = 64 * 1024 * 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl_s <= 0:
            raise ConfigError(f"cache ttl_s must be above 0: {ttl_s}")
        if max_bytes <= 0:
            raise ConfigError(f"cache max_bytes must be above 0: {max_bytes}")
        self.ttl_s = ttl_s
        self.max_bytes = max_bytes
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[float, CachedAnswer]] = OrderedDict()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> CachedAnswer | None:
        """The answer kept under ``key`` if it has not expired."""
        now = self._clock()
        with self._lock:
            held = self._entries.get(key)
            if held is None:
                return None
            expires, answer = held
            if expires <= now:
                self._drop(key)
                return None
            self._entries.move_to_end(key)
            return answer

    async def get_async(self, key: str) -> CachedAnswer | None:
        """`get` as the gateway asks it: a shared cache (Redis) answers over the network."""
        return self.get(key)

    def put(self, key: str, answer: CachedAnswer) -> bool:
        """Keep ``answer``; False when it alone is larger than the whole cache."""
        size = answer.size
        if size > self.max_bytes:
            return False
        with self._lock:
            if key in self._entries:
                self._drop(key)
            self._entries[key] = (self._clock() + self.ttl_s, answer)
            self.bytes += size
            while self.bytes > self.max_bytes:
                self._drop(next(iter(self._entries)))
        return True

    def _drop(self, key: str) -> None:
        _, answer = self._entries.pop(key)
        self.bytes -= answer.size
