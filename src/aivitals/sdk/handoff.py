"""The hand-off: a tracked call ends on the application's thread and is recorded on ours.

Building, validating and pricing a `Call` and updating every sink costs several times what the
application's own metrics code would (docs/benchmarks.md, "The SDK"). So the caller's thread
only reads the clocks, counts the call out of flight and captures what belongs to its context
(attribution, the last call id); the ended draft goes, with one `SimpleQueue.put`, to a daemon
worker that records it, in the order calls ended. Nothing is lost and nothing grows unbounded:

- a draft is recorded exactly once, by whoever claims it first under `HandOff.lock`: the
  worker, or the application reading ``call.recorded`` (which records it there and then);
- with `MAX_PENDING` drafts waiting (a loop recording faster than the worker can follow), the
  caller records its own call at once (back-pressure, counted in `HandOff.synchronous`);
- `drain` returns once everything handed over before it is recorded: the recorder's ``flush``
  and ``close`` run it first (``Recorder.flush_first``), so ``aivitals.flush()``, the exit hook
  (``aivitals.shutdown``) and a reconfiguration lose nothing;
- a fork drains in the parent first: the child starts with nothing of the parent's, a fresh
  lock, and its own worker when it next hands a call over.

`queue.SimpleQueue` rather than a `deque` and an event: its ``put`` is one C call that also
wakes a waiting worker, so no wake-up is ever missed and the caller never takes a lock.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
from queue import Empty, SimpleQueue
from typing import Protocol

from aivitals.recorder import Recorder

log = logging.getLogger("aivitals.sdk")

MAX_PENDING = 10_000
"""Drafts waiting for the worker before the callers record their own (back-pressure)."""


class Draft(Protocol):
    """What the hand-off records: a finished call that records itself once (`materialise`)."""

    def materialise(self) -> None: ...


class HandOff:
    """One queue and one worker for the process; see the module docs."""

    def __init__(self) -> None:
        self._queue: SimpleQueue[Draft | threading.Event] = SimpleQueue()
        # Held while a draft is recorded: whoever claims a draft does so under it, so a reader
        # of ``call.recorded`` waits for the worker's record instead of making a second one.
        self.lock = threading.RLock()
        self._worker: threading.Thread | None = None
        self._held_at_fork = False
        # Drafts recorded on their caller's thread by back-pressure (`synchronous`): a count's
        # next() is one C call, atomic under the GIL, so callers racing here lose no increment.
        self._synchronous = itertools.count()
        self._synchronous_reads = 0
        self._reads_lock = threading.Lock()
        self._said_full = False

    def has_room(self) -> bool:
        """Whether a draft may be queued; if not, its caller records it (back-pressure)."""
        if self._queue.qsize() < MAX_PENDING:
            return True
        next(self._synchronous)
        if not self._said_full:
            self._said_full = True
            log.info(
                "aivitals: %d calls wait to be recorded; calls are recorded on the "
                "application's thread until fewer do (said once)",
                MAX_PENDING,
            )
        return False

    @property
    def synchronous(self) -> int:
        """Drafts recorded on their caller's thread by back-pressure so far (exact).

        Exported as ``aivitals_sdk_synchronous_records_total`` (`aivitals.sdk.handoff_metrics`).
        A count has no public read, so each read advances it too and takes the reads away.
        """
        with self._reads_lock:
            reads = self._synchronous_reads
            self._synchronous_reads = reads + 1
            return next(self._synchronous) - reads

    def put(self, draft: Draft) -> None:
        """Queue ``draft`` for the worker, which records it (`Draft.materialise`)."""
        self._queue.put(draft)
        if self._worker is None:
            try:
                self._start()
            except RuntimeError:  # no thread starts while the interpreter exits: record here
                self.drain()

    def pending(self) -> int:
        """Drafts waiting for the worker (about: another thread may be adding one)."""
        return self._queue.qsize()

    def drain(self, timeout_s: float | None = None) -> bool:
        """Record every draft handed over so far; returns False if ``timeout_s`` passed first.

        A marker goes through the queue and the worker sets it once everything before it is
        recorded: drafts stay recorded in the order they ended (first-seen label caps, the
        live windows' minutes). Without a live worker (none started yet, or this is it), what
        waits is recorded here.
        """
        worker = self._worker
        if worker is None or not worker.is_alive() or worker is threading.current_thread():
            while True:
                try:
                    item = self._queue.get_nowait()
                except Empty:
                    return True
                if isinstance(item, threading.Event):
                    item.set()
                else:
                    self._materialise(item)
        marker = threading.Event()
        self._queue.put(marker)
        return marker.wait(timeout_s)

    def _start(self) -> None:
        with self.lock:
            if self._worker is not None:
                return
            if not _fork_hooks:
                _fork_hooks.append(True)
                os.register_at_fork(
                    before=self._before_fork,
                    after_in_parent=self._after_fork_in_parent,
                    after_in_child=self._after_fork_in_child,
                )
            worker = threading.Thread(target=self._run, name="aivitals-sdk", daemon=True)
            worker.start()
            self._worker = worker

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if isinstance(item, threading.Event):
                item.set()
            else:
                self._materialise(item)

    def _materialise(self, draft: Draft) -> None:
        try:
            with self.lock:
                draft.materialise()
        except Exception:  # the worker must outlive any draft
            log.exception("aivitals: could not record a call handed over")

    def _before_fork(self) -> None:
        # Recorded in the parent, where its sinks are: a child inheriting drafts would record
        # the parent's calls a second time. Holding the lock across the fork means the worker
        # is not inside a record (holding sinks' locks) when the child's copy is made.
        self.drain(timeout_s=5.0)
        self._held_at_fork = self.lock.acquire(timeout=5.0)

    def _after_fork_in_parent(self) -> None:
        if self._held_at_fork:
            self._held_at_fork = False
            self.lock.release()

    def _after_fork_in_child(self) -> None:
        self.lock = threading.RLock()
        self._queue = SimpleQueue()
        self._worker = None  # the thread did not survive the fork: the next put starts one
        self._held_at_fork = False


_fork_hooks: list[bool] = []  # registered once, with the first worker: importing does nothing

handoff = HandOff()
Recorder.flush_first.append(handoff.drain)
