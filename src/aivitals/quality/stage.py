"""The quality stage: a call's content goes to its consumers on a worker thread, never the caller's.

The recorder hands each recorded call that came with a `CallContent` (or a zero-argument thunk
that builds one, so that even extracting the text happens here) to `QualityStage.submit`. The
stage keeps one bounded queue and one daemon worker thread: a full queue drops the content and
counts it (``aivitals_quality_dropped_total``), it never blocks the caller; the call itself is
recorded all the same. The worker resolves the thunk and gives (call, content) to every
registered `ContentConsumer`: the evaluators, the judge, content capture. A consumer that raises
is counted (``aivitals_quality_errors_total``) and the others still run; nothing stops the worker.

>>> from aivitals.content import CallContent
>>> from aivitals.model import Call
>>> seen = []
>>> class Seen:
...     def on_content(self, call, content):
...         seen.append((call.model, content.output_text))
>>> stage = QualityStage()
>>> stage.wants_content
False
>>> stage.register(Seen(), name="seen")
>>> stage.submit(Call(provider="openai", model="gpt-4o-mini", latency_ms=1.0),
...              lambda: CallContent(output_text="Paris."))
True
>>> stage.flush(), seen
(True, [('gpt-4o-mini', 'Paris.')])
>>> stage.close()
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
import weakref
from collections import Counter, deque
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from aivitals.content import CallContent
from aivitals.model import Call

log = logging.getLogger("aivitals.quality")

_ERROR_LOG_INTERVAL_S = 60.0

ContentSource = CallContent | Callable[[], CallContent | None]
"""What a source hands over: the content, or a thunk the worker calls to build it (None: none)."""

DROP_REASONS = ("queue_full", "shutdown")
"""Why content was dropped before its consumers saw it (the call is recorded either way)."""

WAKE_INTERVAL_S = 0.05
"""How long content may wait for the worker when few calls arrive (scores come that much later)."""

_WAKE_AT = 64  # contents queued that wake the worker before its interval is up
_SLICE_S = 0.001  # the worker's work between two hand-overs of the GIL

CONTENT_PART = "content"
"""The error part counted when a source's thunk raised."""


@runtime_checkable
class ContentConsumer(Protocol):
    """Gets each recorded call with its content, on the quality worker thread.

    It may take its time (the caller is not waiting) but should not block for long: the others
    wait behind it. A consumer that needs I/O (the judge) queues to its own worker. Optional
    methods, called when present: ``flush(timeout_s) -> bool`` by `QualityStage.flush`, and
    ``close()`` by `QualityStage.close`, after the queue has drained.
    """

    def on_content(self, call: Call, content: CallContent) -> None: ...


class QualityStats:
    """What the stage went through; exported by the Prometheus sink with the recorder's health."""

    def __init__(self) -> None:
        self.dropped: Counter[str] = Counter({reason: 0 for reason in DROP_REASONS})
        # By part: "content" (a thunk raised), a consumer's name, or "evaluator/<name>".
        self.errors: Counter[str] = Counter({CONTENT_PART: 0})
        self.processed = 0


class QualityStage:
    """One bounded queue, one daemon worker, the registered consumers. Thread-safe.

    ``queue_size`` bounds the contents waiting for the worker. The worker starts with the first
    consumer registered: a stage with none costs nothing.
    """

    def __init__(self, *, queue_size: int = 10_000, stats: QualityStats | None = None) -> None:
        if queue_size < 1:
            raise ValueError("queue_size must be >= 1")
        self.stats = stats or QualityStats()
        self._queue_size = queue_size
        self._queue: deque[tuple[Call, ContentSource]] = deque()
        self._consumers: tuple[tuple[str, ContentConsumer], ...] = ()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._done = threading.Condition()
        self._enqueued = 0
        self._handled = 0
        self._closed = False
        self._worker: threading.Thread | None = None
        self._last_error_log: dict[str, float] = {}
        os.register_at_fork(after_in_child=functools.partial(_after_fork, weakref.ref(self)))

    @property
    def wants_content(self) -> bool:
        """Whether any consumer is registered: sources skip building content (even a thunk)
        when this is False."""
        return bool(self._consumers)

    @property
    def consumers(self) -> dict[str, ContentConsumer]:
        """The registered consumers by name, in the order they run."""
        return dict(self._consumers)

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    def register(self, consumer: ContentConsumer, *, name: str | None = None) -> None:
        """Add ``consumer`` (under ``name``, default its ``name`` attribute or its class name).

        Registering a name again replaces the consumer of that name.
        """
        label = name or getattr(consumer, "name", None) or type(consumer).__name__.lower()
        with self._lock:
            others = tuple((n, c) for n, c in self._consumers if n != label)
            self._consumers = (*others, (str(label), consumer))
            start = self._worker is None and not self._closed
        if start:
            self._start_worker()

    def unregister(self, name: str) -> None:
        """Remove the consumer registered as ``name`` (nothing if there is none)."""
        with self._lock:
            self._consumers = tuple((n, c) for n, c in self._consumers if n != name)

    def submit(self, call: Call, content: ContentSource) -> bool:
        """Queue ``call`` with its content for the consumers; False if it was dropped. Never
        blocks, never raises."""
        with self._lock:
            if not self._consumers:
                return False
            if self._closed:
                self.stats.dropped["shutdown"] += 1
                return False
            if len(self._queue) >= self._queue_size:
                self.stats.dropped["queue_full"] += 1
                return False
            self._queue.append((call, content))
            self._enqueued += 1
            wake = len(self._queue) == _WAKE_AT
        # Waking the worker for each call would cost the caller a futex wake-up (and the worker
        # would then contend for the GIL while the caller still runs): it wakes by itself every
        # WAKE_INTERVAL_S, or now when a backlog builds; flush() wakes it at once.
        if wake:
            self._wake.set()
        return True

    def count_error(self, part: str) -> None:
        """Count a failure of ``part`` (a consumer names the piece of it that failed)."""
        with self._lock:
            self.stats.errors[part] += 1
        now = time.monotonic()
        if now - self._last_error_log.get(part, -_ERROR_LOG_INTERVAL_S) >= _ERROR_LOG_INTERVAL_S:
            # One line per part per minute: a broken evaluator must not flood the logs.
            self._last_error_log[part] = now
            log.exception(
                "aivitals quality %r failed (%d failures so far); the application is unaffected",
                part,
                self.stats.errors[part],
            )

    def flush(self, timeout_s: float | None = 10.0) -> bool:
        """Wait until every content submitted so far has been through the consumers (and the
        consumers that have a ``flush`` flushed). False if ``timeout_s`` passed first."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        target = self._enqueued
        self._wake.set()
        with self._done:
            while self._handled < target:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                if self._worker is None or not self._worker.is_alive():
                    return False
                self._done.wait(remaining)
        if self._closed:  # the consumers were flushed and closed by close()
            return True
        flushed = True
        for name, consumer in self._consumers:
            flush = getattr(consumer, "flush", None)
            if flush is None:
                continue
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                flushed = bool(flush(remaining)) and flushed
            except Exception:
                self.count_error(name)
        return flushed

    def close(self, timeout_s: float | None = 10.0) -> None:
        """Drain the queue, stop the worker, close the consumers that have a ``close``.

        Content still queued when ``timeout_s`` passes is dropped and counted (``shutdown``);
        content submitted afterwards is dropped and counted too.
        """
        if self._closed:
            return
        self.flush(timeout_s)
        with self._lock:
            self._closed = True
        self._wake.set()
        if self._worker is not None:
            self._worker.join(timeout_s)
        with self._lock:
            if self._queue:
                self.stats.dropped["shutdown"] += len(self._queue)
                self._queue.clear()
        for name, consumer in self._consumers:
            close = getattr(consumer, "close", None)
            if close is None:
                continue
            try:
                close()
            except Exception:
                self.count_error(name)

    def _start_worker(self) -> None:
        # A daemon thread never holds the interpreter open; close() is what drains the queue.
        self._worker = threading.Thread(target=self._run, name="aivitals-quality", daemon=True)
        self._worker.start()

    def _after_fork(self) -> None:
        # A forked child inherits the queue but not the thread, and perhaps a held lock.
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._done = threading.Condition()
        if self._worker is not None and not self._closed:
            self._start_worker()

    def _run(self) -> None:
        while True:
            self._wake.wait(WAKE_INTERVAL_S)
            self._wake.clear()
            handled = 0
            slice_began = time.perf_counter()
            while self._queue:
                call, source = self._queue.popleft()
                try:
                    self._handle(call, source)
                except Exception:  # the worker must outlive anything a consumer does
                    self.count_error("stage")
                handled += 1
                if time.perf_counter() - slice_began >= _SLICE_S:
                    self._publish(handled)
                    handled = 0
                    # Hand the GIL over once a slice of work is done: an application thread
                    # waiting for it runs now, not at the end of the interpreter's 5 ms switch
                    # interval. After every item instead, the hand-overs cost a busy server
                    # (the OTLP receiver) about 70 µs of CPU per call.
                    time.sleep(0)
                    slice_began = time.perf_counter()
            if handled:
                self._publish(handled)
            if self._closed:
                return

    def _publish(self, handled: int) -> None:
        with self._done:
            self._handled += handled
            self.stats.processed += handled
            self._done.notify_all()

    def _handle(self, call: Call, source: ContentSource) -> None:
        if isinstance(source, CallContent):
            content: CallContent | None = source
        else:
            try:
                content = source()
            except Exception:
                self.count_error(CONTENT_PART)
                return
        if content is None:
            return
        for name, consumer in self._consumers:
            try:
                consumer.on_content(call, content)
            except Exception:
                self.count_error(name)


def _after_fork(ref: weakref.ref[QualityStage]) -> None:
    stage = ref()
    if stage is not None:
        stage._after_fork()
