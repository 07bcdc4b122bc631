"""The one thread that writes to Redis for the shared state, in order, pipelined.

What a request does not wait for (spend, hold releases, token counts, cache puts) is queued
here as a `Write` from any thread, the event loop's included, without blocking: the thread
takes whatever is queued, sends it as one pipeline (one round trip for many writes) and the
writes land in the order they were queued, so a call's spend is counted before the hold it
settles is given back.

While the link is down each write's ``failed`` runs instead (on this thread: a budget keeps
its spend as a delta to replay, a cache put is dropped), and the thread pings Redis every
``retry_s``; when it answers, the reconcilers run before anything else is sent, then the link
is up again. ``starters`` run once when the thread starts (the budgets learn the data's epoch). ``tick`` callbacks run every ``tick_s`` while up (hold renewals, cache figures).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

from aivitals.shared.link import FAILURES, RedisLink

log = logging.getLogger("aivitals.shared")

_BATCH = 512


@dataclass(frozen=True, slots=True)
class Write:
    """Commands to add to a pipeline; ``failed`` runs (on the writer thread) if they could not
    be sent. ``feature`` names it in the metrics."""

    feature: str
    send: Callable[[redis.client.Pipeline], None]
    failed: Callable[[], None] | None = None


class Writer:
    """A daemon thread sending queued `Write`s through ``link``'s synchronous client."""

    def __init__(self, link: RedisLink, *, tick_s: float = 5.0) -> None:
        self.link = link
        self.tick_s = tick_s
        # SimpleQueue.put is reentrant: a hold's finalizer may queue from the garbage collector.
        self._queue: queue.SimpleQueue[Write | threading.Event | None] = queue.SimpleQueue()
        self.starters: list[Callable[[redis.Redis], None]] = []
        self.reconcilers: list[Callable[[redis.Redis], None]] = []
        self.ticks: list[Callable[[redis.Redis], None]] = []
        self._thread = threading.Thread(target=self._run, name="aivitals-redis-writer", daemon=True)
        self._started = False
        self._closed = False

    def start(self) -> None:
        if not self._started:
            self._started = True
            self._thread.start()

    def put(self, write: Write) -> None:
        """Queue ``write`` (never blocks, from any thread)."""
        if self._closed:
            if write.failed is not None:
                write.failed()
            return
        self._queue.put(write)

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until everything queued so far was sent (or failed); for tests and shutdown."""
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout_s)

    def close(self, timeout_s: float = 5.0) -> None:
        """Send what is queued, then stop the thread."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        if self._started:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        for starter in self.starters:
            if not self._guarded("start", starter):
                break  # down: the probe reconciles when it answers
        next_tick = time.monotonic() + self.tick_s
        next_probe = 0.0
        while True:
            wait = max(0.0, (next_tick if self.link.up else next_probe) - time.monotonic())
            taken: list[Write | threading.Event | None] = []
            try:
                taken.append(self._queue.get(timeout=min(wait, self.link.retry_s) or 0.001))
                while len(taken) < _BATCH and taken[-1] is not None:
                    taken.append(self._queue.get_nowait())
            except queue.Empty:
                pass
            batch = [item for item in taken if isinstance(item, Write)]
            events = [item for item in taken if isinstance(item, threading.Event)]
            stop = None in taken
            if not self.link.up and time.monotonic() >= next_probe:
                next_probe = time.monotonic() + self.link.retry_s
                self._probe()
            if batch:
                self._send(batch)
            if self.link.up and time.monotonic() >= next_tick:
                next_tick = time.monotonic() + self.tick_s
                for tick in self.ticks:
                    self._guarded("tick", tick)
            for event in events:
                event.set()
            if stop:
                return

    def _probe(self) -> None:
        if not self.link.ping():
            return
        # Other pooled connections may be sockets to the server that went away (another
        # thread's, from the start): each would fail once and mark the link down again.
        self.link.sync.connection_pool.disconnect()
        for reconcile in self.reconcilers:
            if not self._guarded("reconcile", reconcile):
                return  # still failing: stay down, try again at the next probe
        self.link.mark_up()

    def _guarded(self, what: str, step: Callable[[redis.Redis], None]) -> bool:
        try:
            step(self.link.sync)
        except FAILURES as exc:
            self.link.failed("budgets", exc)
            return False
        except Exception:
            log.exception("aivitals: the Redis writer's %s failed", what)
            return False
        return True

    def _send(self, batch: list[Write]) -> None:
        if self.link.up:
            pipe = self.link.sync.pipeline(transaction=False)
            try:
                for write in batch:
                    write.send(pipe)
                results = pipe.execute(raise_on_error=False)
            except FAILURES as exc:
                self.link.failed(batch[0].feature, exc)
            except Exception:
                log.exception("aivitals: a Redis write could not be built; it is dropped")
                return
            else:
                for result in results:
                    if isinstance(result, redis.ResponseError):
                        # A script error is a bug of ours, not an outage: say it, drop the write.
                        log.error("aivitals: Redis refused a shared-state write: %s", result)
                return
        for write in batch:
            self.link.metrics.fallback(write.feature)
            if write.failed is not None:
                try:
                    write.failed()
                except Exception:
                    log.exception("aivitals: a Redis write's fallback failed")
