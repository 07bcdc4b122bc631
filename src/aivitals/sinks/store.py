"""`StoreSink`: the recorder's batches into a `Store`, riding out outages without losing calls.

While the store is failing (locked past its timeout, unreachable, out of disk), calls and scores
wait in a bounded in-memory buffer, oldest first, and are retried with exponential back-off: once
the back-off has elapsed, the next batch (or the worker's once-a-second tick) tries again, oldest
items first. Beyond ``max_buffered`` items the oldest are dropped and counted in ``dropped``.

Failure semantics: a batch that does not reach the store *now* raises `StoreError` out of
``write_calls``/``write_scores`` even though it is kept for retry, so the recorder counts the
outage (``aivitals_sink_errors{sink="store"}`` per batch, ``aivitals_sink_failed_items`` per item
refused on first delivery) and logs it once a minute. What was finally lost is ``dropped`` (buffer
overflow, or still buffered at close) plus ``rejected`` (items the database refused as data, such
as a value too long for its column: retrying cannot help, so they are isolated and dropped, and
the rest of their batch is stored).

Durable writes: `commit` stores a batch *now*, on the caller's thread, or raises; the ingest API
answers 2xx only after it returned. Concurrent commits are merged into one transaction
(`GroupCommit`). While the sink is in back-off, `commit` fails at once with a retryable
`StoreError`, so clients are told to retry instead of waiting on a dead store.

Shutdown: what is still held for retry at `close` (calls the gateway or the SDK recorded while
the store was failing) is written to ``pending_dir`` (one JSON file per chunk, the exporter's
spool format) and stored by the next `StoreSink` opened with that directory, before it takes
new work. Only if that file cannot be written either is anything lost; it is then counted in
``lost_at_close``, logged with the count, and `aivitals serve` exits non-zero.

>>> import tempfile, pathlib
>>> from aivitals.model import Call
>>> from aivitals.store.sql import SqlStore
>>> folder = tempfile.TemporaryDirectory()
>>> sink = StoreSink(SqlStore.open(pathlib.Path(folder.name) / "aivitals.db"))
>>> sink.write_calls([Call(provider="openai", model="gpt-4o", latency_ms=90.0)])
>>> sink.pending, sink.dropped
(0, 0)
>>> sink.close()
>>> folder.cleanup()
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path

import msgspec

from aivitals.model import Call, Outcome, Score, utc_now
from aivitals.retry import Backoff, RetryPolicy
from aivitals.sinks.group_commit import GroupCommit
from aivitals.sinks.spool import Kind, Spool
from aivitals.store.base import Store
from aivitals.store.errors import StoreError

log = logging.getLogger("aivitals.sinks.store")

# Items per store transaction when draining the buffer, and chunks drained per write or tick:
# after a long outage the backlog goes out over several seconds instead of stalling the worker
# (and filling the recorder's queue) for minutes.
_CHUNK = 1000
_CHUNKS_PER_TURN = 20
# Retention deletes at most this many calls per tick, for the same reason.
_RETENTION_ROWS_PER_TICK = 20_000
# The pending directory is replayed on open and, once new files could be there, on ticks.
_PENDING_MAX_BYTES = 1024 * 1024 * 1024


class _Calls(msgspec.Struct):
    calls: list[Call]


class _Scores(msgspec.Struct):
    scores: list[Score]


class _Outcomes(msgspec.Struct):
    outcomes: list[Outcome]


class StoreSink:
    """A batch sink writing into ``store``; see the module docstring for what happens on failure.

    ``retention`` deletes raw calls older than that (rollups stay), checked at most every
    ``retention_interval_s`` from the recorder's worker. ``pending_dir``: where what could not be
    stored by `close` waits for the next start (None: nowhere, it is lost and counted).
    ``clock`` (monotonic seconds) and ``now`` (wall time) are injectable for tests.
    """

    name = "store"

    def __init__(
        self,
        store: Store,
        *,
        retention: timedelta | None = None,
        max_buffered: int = 100_000,
        backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
        retention_interval_s: float = 3600.0,
        pending_dir: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = utc_now,
    ) -> None:
        if max_buffered < 1 or backoff_s <= 0 or max_backoff_s < backoff_s:
            raise ValueError("max_buffered must be >= 1 and 0 < backoff_s <= max_backoff_s")
        if retention is not None and retention <= timedelta(0):
            raise ValueError(f"retention must be positive, got {retention}")
        self.store = store
        self.retention = retention
        self.dropped = 0
        self.rejected = 0
        self.deleted = 0
        self.lost_at_close = 0
        self.spilled = 0
        self.replayed = 0
        self._buffer: deque[Call | Score | Outcome] = deque()
        self._max_buffered = max_buffered
        # No jitter: one sink per process retries one database; spreading is the exporter's need.
        self._backoff = Backoff(
            RetryPolicy(first_s=backoff_s, max_s=max_backoff_s, max_attempts=None), clock=clock
        )
        self._retention_interval_s = retention_interval_s
        self._next_retention = float("-inf")
        self._clock = clock
        self._now = now
        self._lock = threading.Lock()
        # The back-off and the failure state change from the worker (under _lock) and from
        # ingest threads committing (which must not wait on _lock behind a long drain).
        self._health = threading.Lock()
        self._closed = False
        self._failing_since: float | None = None
        self._last_error = ""
        self._group: GroupCommit[Call | Score | Outcome] = GroupCommit(
            self._commit_now, isolate=lambda exc: not _retryable(exc)
        )
        self._encoder = msgspec.json.Encoder()
        self._pending_dir = pending_dir
        self._pending: Spool | None = None
        self._pending_items = 0
        # Made only when a shutdown needs it: most stores never get the folder.
        if pending_dir is not None and pending_dir.is_dir():
            self._pending = Spool(pending_dir, max_bytes=_PENDING_MAX_BYTES)
            self._pending.recover()
            self._replay_pending()

    @property
    def pending(self) -> int:
        """Calls and scores held for retry."""
        return len(self._buffer)

    def buffered(self) -> Mapping[str, int]:
        """Items waiting, by where: held in memory for retry, in files left by a shutdown."""
        return {"store_retry": len(self._buffer), "store_pending_files": self._pending_items}

    def lost(self) -> Mapping[str, int]:
        """Items lost for good, by why."""
        return {
            "overflow": self.dropped - self.lost_at_close,
            "refused": self.rejected,
            "shutdown": self.lost_at_close,
        }

    def health(self) -> str | None:
        """None while writes succeed; else why the store cannot be written now."""
        since = self._failing_since
        if since is None:
            return None
        return (
            f"writes have failed for {self._clock() - since:.0f} s ({self._last_error}); "
            f"{len(self._buffer)} calls and scores held for retry"
        )

    def commit(
        self,
        calls: Sequence[Call],
        scores: Sequence[Score] = (),
        outcomes: Sequence[Outcome] = (),
    ) -> list[Call]:
        """Store ``calls``, ``scores`` and ``outcomes`` now, merged with concurrent commits; raise if not stored.

        Returns the calls newly stored: those of ``calls`` the store did not have already (a
        retried batch), so the other sinks are handed each call once. Raises `StoreError`
        (``retryable`` when trying later can help) and keeps nothing: the caller still holds the
        items and tells its client to send them again.
        """
        wait_s = self._backoff.wait_s
        if wait_s > 0:
            raise StoreError(
                f"the store cannot be written now ({self._last_error})",
                retryable=True,
                retry_after_s=wait_s,
            )
        committed = self._group.commit([*calls, *scores, *outcomes])
        return [item for item in committed if isinstance(item, Call)]

    def write_calls(self, calls: Sequence[Call]) -> None:
        self._write(calls)

    def write_scores(self, scores: Sequence[Score]) -> None:
        self._write(scores)

    def write_outcomes(self, outcomes: Sequence[Outcome]) -> None:
        self._write(outcomes)

    def write_batch(
        self, calls: Sequence[Call], scores: Sequence[Score], outcomes: Sequence[Outcome]
    ) -> None:
        """The three kinds at once: one transaction for up to `_CHUNK` items of them."""
        self._write([*calls, *scores, *outcomes])

    def tick(self) -> None:
        """Retry the buffer once its back-off has elapsed, and apply retention when due."""
        with self._lock:
            if self._buffer and self._backoff.ready:
                # Counted when those items were first refused; the back-off has grown.
                with contextlib.suppress(StoreError):
                    self._drain()
            if self._pending_items and self._backoff.ready:
                self._replay_pending()
            if self.retention is not None and self._clock() >= self._next_retention:
                self._expire(self.retention)

    def close(self) -> None:
        """Try once more to store what is buffered (back-off or not); keep the rest on disk.

        What cannot be stored goes to ``pending_dir`` for the next start; only what cannot be
        written there either is lost, counted in ``lost_at_close`` and logged with the count.
        """
        with self._lock:
            self._closed = True
            if self._buffer:
                with contextlib.suppress(StoreError):
                    self._drain(turns=None)
            if self._buffer:
                self._spill()
            self.store.close()

    def _spill(self) -> None:
        held = len(self._buffer)
        if self._pending_dir is not None:
            try:
                if self._pending is None:
                    self._pending = Spool(self._pending_dir, max_bytes=_PENDING_MAX_BYTES)
                for kind, items in _by_kind(list(self._buffer)):
                    for start in range(0, len(items), _CHUNK):
                        chunk = items[start : start + _CHUNK]
                        body = self._encoder.encode({kind: chunk})
                        self.dropped += self._pending.put(kind, body, count=len(chunk))
                        self.spilled += len(chunk)
                        for _ in chunk:
                            self._buffer.popleft()
            except OSError as exc:
                log.error(
                    "aivitals: cannot keep calls for the next start in %s (%s)",
                    self._pending_dir,
                    exc,
                )
            else:
                log.warning(
                    "aivitals: the store could not be written before shutdown; %d calls and "
                    "scores wait in %s and are stored at the next start",
                    held,
                    self._pending_dir,
                )
        if self._buffer:
            lost = len(self._buffer)
            calls_lost = sum(isinstance(item, Call) for item in self._buffer)
            scores_lost = sum(isinstance(item, Score) for item in self._buffer)
            # By kind too: a call lost and its evaluators' scores are one call to the operator.
            log.error(
                "aivitals: %d calls and scores could not be stored before shutdown and are LOST "
                "(%d calls, %d scores, %d outcomes)",
                lost,
                calls_lost,
                scores_lost,
                lost - calls_lost - scores_lost,
            )
            self.lost_at_close += lost
            self.dropped += lost
            self._buffer.clear()

    def _replay_pending(self) -> None:
        """Store what an earlier shutdown left in ``pending_dir``, oldest first."""
        assert self._pending is not None
        for entry in self._pending.entries():
            claimed = self._pending.claim(entry)
            if claimed is None:
                continue
            try:
                items = _decode(entry.kind, claimed.read_bytes())
                self.store.write(
                    [item for item in items if isinstance(item, Call)],
                    [item for item in items if isinstance(item, Score)],
                    [item for item in items if isinstance(item, Outcome)],
                )
            except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
                log.error("aivitals: unreadable pending file %s dropped: %s", claimed, exc)
                self.rejected += entry.count
            except Exception as exc:
                self._pending.release(claimed, entry)
                if _retryable(exc):
                    self._failed(exc)  # the rest waits for the back-off, not a timeout each
                    break
                log.error("aivitals: pending file %s refused by the store: %s", claimed, exc)
                self.rejected += entry.count
            else:
                self.replayed += entry.count
            self._pending.remove(claimed)
        self._pending_items = sum(entry.count for entry in self._pending.entries())

    def _write(self, items: Sequence[Call | Score | Outcome]) -> None:
        with self._lock:
            self._hold(items)
            if self._closed:
                # Recorded after close (a worker that outlived its deadline): straight to disk.
                self._spill()
                return
            wait_s = self._backoff.wait_s
            if wait_s > 0:
                raise StoreError(
                    f"store unavailable, next retry in {round(wait_s, 1):g} s; {self._counts()}",
                    retryable=True,
                )
            self._drain()

    def _hold(self, items: Sequence[Call | Score | Outcome]) -> None:
        overflow = len(self._buffer) + len(items) - self._max_buffered
        if overflow > 0:
            # Drop the oldest: under a long outage recent calls matter more to the dashboards.
            kept_new = items[-self._max_buffered :] if len(items) > self._max_buffered else items
            self.dropped += len(items) - len(kept_new)
            for _ in range(min(overflow, len(self._buffer))):
                self._buffer.popleft()
                self.dropped += 1
            items = kept_new
        self._buffer.extend(items)

    def _drain(self, turns: int | None = _CHUNKS_PER_TURN) -> None:
        """Store buffered items oldest first; raise `StoreError` if the store failed or refused."""
        refused: StoreError | None = None
        for _ in range(turns) if turns is not None else itertools.count():
            if not self._buffer:
                break
            chunk = list(itertools.islice(self._buffer, _CHUNK))
            try:
                self._store_items(chunk)
            except Exception as exc:
                if _retryable(exc):
                    raise self._failed(exc) from exc
                refused = self._isolate(len(chunk))
                continue
            for _ in chunk:
                self._buffer.popleft()
        with self._health:
            self._backoff.succeeded()
            self._failing_since = None
        if refused is not None:
            raise StoreError(
                f"the store refused some calls or scores, dropped: {refused}; {self._counts()}"
            ) from refused

    def _isolate(self, count: int) -> StoreError:
        """Write a refused chunk item by item: keep the good ones, drop the ones refused."""
        refused: StoreError | None = None
        for _ in range(count):
            item = self._buffer[0]
            try:
                self._store_items([item])
            except Exception as exc:
                if _retryable(exc):
                    raise self._failed(exc) from exc  # the item stays first in line
                refused = exc if isinstance(exc, StoreError) else StoreError(str(exc))
                self.rejected += 1
            self._buffer.popleft()
        return refused or StoreError("a batch failed, then every item stored on its own")

    def _store_items(self, items: list[Call | Score | Outcome]) -> Sequence[Call]:
        calls = [item for item in items if isinstance(item, Call)]
        scores = [item for item in items if isinstance(item, Score)]
        outcomes = [item for item in items if isinstance(item, Outcome)]
        return (
            self.store.write(calls, scores, outcomes)
            if outcomes
            else self.store.write(calls, scores)
        )

    def _commit_now(self, items: list[Call | Score | Outcome]) -> list[Call | Score | Outcome]:
        """Store ``items``; the calls newly stored and every score and outcome (not checked)."""
        try:
            new = self._store_items(items)
        except Exception as exc:
            if _retryable(exc):
                raise self._failed(exc) from exc
            raise
        with self._health:
            self._failing_since = None
        return [*new, *(item for item in items if not isinstance(item, Call))]

    def _note_failure(self, exc: Exception) -> None:
        self._last_error = str(exc)
        if self._failing_since is None:
            self._failing_since = self._clock()

    def _failed(self, exc: Exception) -> StoreError:
        """Grow the back-off; the error to raise (the items stay buffered)."""
        with self._health:
            self._note_failure(exc)
            delay_s = self._backoff.failed()
        return StoreError(
            f"{exc}; {self._counts()}, retrying in {delay_s:g} s",
            retryable=True,
            retry_after_s=delay_s,
        )

    def _counts(self) -> str:
        return f"{len(self._buffer)} calls and scores held for retry, {self.dropped} dropped"

    def _expire(self, retention: timedelta) -> None:
        try:
            deleted = self.store.delete_calls_before(
                self._now() - retention, max_rows=_RETENTION_ROWS_PER_TICK
            )
        except Exception as exc:
            log.warning("aivitals: deleting old calls failed (%s); retrying later", exc)
            self._next_retention = self._clock() + self._retention_interval_s
            return
        self.deleted += deleted
        # A full helping means more is due: carry on next tick rather than in an hour.
        more = deleted >= _RETENTION_ROWS_PER_TICK
        self._next_retention = self._clock() + (0.0 if more else self._retention_interval_s)


def _by_kind(
    items: list[Call | Score | Outcome],
) -> list[tuple[Kind, list[Call | Score | Outcome]]]:
    calls: list[Call | Score | Outcome] = [item for item in items if isinstance(item, Call)]
    scores: list[Call | Score | Outcome] = [item for item in items if isinstance(item, Score)]
    outcomes: list[Call | Score | Outcome] = [item for item in items if isinstance(item, Outcome)]
    parts: list[tuple[Kind, list[Call | Score | Outcome]]] = [
        ("calls", calls),
        ("scores", scores),
        ("outcomes", outcomes),
    ]
    return [(kind, part) for kind, part in parts if part]


def _decode(kind: Kind, body: bytes) -> Sequence[Call | Score | Outcome]:
    if kind == "calls":
        return msgspec.json.decode(body, type=_Calls).calls
    if kind == "outcomes":
        return msgspec.json.decode(body, type=_Outcomes).outcomes
    return msgspec.json.decode(body, type=_Scores).scores


def _retryable(exc: BaseException) -> bool:
    # A store's own errors say whether a retry can help; anything else (a custom store's bug, a
    # network library's error) is assumed passing, so data is kept rather than thrown away.
    return exc.retryable if isinstance(exc, StoreError) else True
