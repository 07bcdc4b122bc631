"""The pipeline: a `Call` goes in, every sink gets it, and the caller is never hurt.

On the caller's thread `Recorder.record` does only what must be synchronous: price the call and
update the in-memory sinks. Everything that does I/O (store, logs, exports) gets the call later, in
batches, from a worker thread fed by a bounded queue. A full queue drops the call and counts it; it
never blocks the caller. A sink that raises is logged and counted, never propagated. `flush()` and
`close()` (run at exit by `aivitals.configure`) wait until everything accepted has been delivered.

A call recorded with its content (`CallContent`, or a thunk that builds it) also goes to the
quality stage (`aivitals.quality.stage`): evaluators, judge and capture read it there, on their
own thread, and their scores come back through `record_score`. Sources ask `wants_content`
first, and build nothing when it is False.

`record_durably` is for sources that acknowledge what they receive (the ingest API): the batch
is committed to the store (the `DurableSink`) on the caller's thread before anything else sees
it, and a failure raises instead of being buffered, so the source can refuse the batch and its
sender keep it.

>>> from aivitals.sinks.memory import MemorySink
>>> sink = MemorySink()
>>> recorder = Recorder(batch_sinks=[sink])
>>> recorded = recorder.record(Call(provider="openai", model="gpt-4o-mini", latency_ms=120.0,
...                                 input_tokens=1000, output_tokens=100))
>>> recorder.flush()
True
>>> len(sink.calls), str(sink.calls[0].cost_usd)
(1, '0.00021')
>>> recorder.close()
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
import weakref
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

import msgspec

from aivitals.draft import CallDraft
from aivitals.model import Call, Outcome, Score
from aivitals.pricing import Pricer
from aivitals.quality.stage import ContentSource, QualityStage, QualityStats
from aivitals.recent_calls import RecentCalls
from aivitals.sinks.base import (
    Accounted,
    BatchSink,
    DurableSink,
    InFlightObserver,
    InlineSink,
    OutcomeSink,
    Ticking,
    WholeBatchSink,
)
from aivitals.usage import TokenUsage

log = logging.getLogger("aivitals.recorder")

_ERROR_LOG_INTERVAL_S = 60.0
_QUEUE_FULL = "\0queue"  # its key among the error logs' times: no sink has this name
_MAX_FLIGHT_PAIRS = 4096  # (provider, model) pairs whose in-flight counting `in_flight` keeps


def _nothing() -> None:
    """In-flight counting where no sink counts calls in flight."""


# A response-cache hit was not sent to the provider: it costs nothing (its saving is saved_usd).
_CACHE_HIT: dict[str, Any] = {"cost_usd": Decimal(0), "price_source": "cache"}


class _Committed:
    """A queued item the durable sink already has: every other batch sink still gets it."""

    __slots__ = ("item",)

    def __init__(self, item: Call | Score | Outcome) -> None:
        self.item = item


class RecorderStats:
    """What the recorder itself has been through; exported as aivitals_* metrics by the Prometheus sink."""

    def __init__(self) -> None:
        self.accepted_calls = 0
        self.accepted_scores = 0
        self.dropped_calls = 0
        self.dropped_scores = 0
        self.accepted_outcomes = 0
        self.dropped_outcomes = 0
        self.internal_errors = 0
        self.lost_at_shutdown = 0
        self.refused = 0  # calls and scores a source could not make valid (the SDK logs each)
        self.sink_errors: Counter[str] = Counter()
        self.sink_failed_items: Counter[str] = Counter()
        self.quality = QualityStats()

    @property
    def quality_dropped(self) -> Counter[str]:
        """Contents the quality stage dropped, by reason (the calls were recorded)."""
        return self.quality.dropped

    @property
    def quality_errors(self) -> Counter[str]:
        """Failures inside the quality stage, by part (a thunk, a consumer, an evaluator)."""
        return self.quality.errors


BATCH_SIZE = 1000
"""Items a batch sink gets at most at once. A batch is one store transaction (the store sink's
chunk is the same size), whose dozen-odd statements each wait for the GIL behind a busy
application: behind a spinning thread the store kept 2,000-2,200 calls a second (with four
scores each) in batches of 1,000 items against 400-800 in batches of 500, in interleaved runs.
Below it a batch is whatever the flush interval gathered, so a quiet application is unaffected."""


class Recorder:
    """Fans calls and scores out to sinks. Thread-safe; `record` never raises and never blocks on I/O.

    ``inline_sinks`` run on the caller's thread; ``batch_sinks`` on the worker thread, in batches of
    up to ``batch_size``, at least every ``flush_interval_s``. ``queue_size`` bounds the calls and
    scores waiting for the worker, and, apart, the contents waiting for the quality stage
    (``quality``: register content consumers there).
    """

    flush_first: ClassVar[list[Callable[[float | None], bool]]] = []
    """Sources that hold calls before recording them (the SDK's hand-off, `aivitals.sdk.handoff`):
    `flush` and `close` drain them first, so what they hold reaches the sinks too."""

    def __init__(
        self,
        *,
        pricer: Pricer | None = None,
        inline_sinks: Sequence[InlineSink] = (),
        batch_sinks: Sequence[BatchSink] = (),
        queue_size: int = 10_000,
        batch_size: int = BATCH_SIZE,
        flush_interval_s: float = 1.0,
    ) -> None:
        if queue_size < 1 or batch_size < 1 or flush_interval_s <= 0:
            raise ValueError("queue_size and batch_size must be >= 1 and flush_interval_s > 0")
        self.pricer = pricer or Pricer()
        self.inline_sinks = tuple(inline_sinks)
        self.batch_sinks = tuple(batch_sinks)
        self.stats = RecorderStats()
        self._in_flight_observers = tuple(
            sink for sink in self.inline_sinks if isinstance(sink, InFlightObserver)
        )
        self._flights: dict[tuple[str, str], tuple[Callable[[], object], Callable[[], object]]] = {}
        self._ticking = tuple(
            sink for sink in (*self.inline_sinks, *self.batch_sinks) if isinstance(sink, Ticking)
        )
        self._durable = next(
            (sink for sink in self.batch_sinks if isinstance(sink, DurableSink)), None
        )
        self._queue: deque[Call | Score | Outcome | _Committed] = deque()
        self._queue_size = queue_size
        self._batch_size = batch_size
        self._interval = flush_interval_s
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._done = threading.Condition()
        self._enqueued = 0
        self._delivered = 0
        self._closed = False
        self._last_error_log: dict[str, float] = {}
        # A score that names only its call inherits the call's model and feature from here.
        self._recent = RecentCalls()
        self._worker: threading.Thread | None = None
        self.quality = QualityStage(queue_size=queue_size, stats=self.stats.quality)
        self._start_worker()
        # A weak reference: the fork hook must not keep every recorder ever built alive.
        os.register_at_fork(after_in_child=functools.partial(_after_fork, weakref.ref(self)))

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    @property
    def wants_content(self) -> bool:
        """Whether a content consumer is registered; when False, sources build no content."""
        return self.quality.wants_content

    @property
    def durable(self) -> bool:
        """Whether `record_durably` commits to a store (else it only records)."""
        return self._durable is not None

    def store_health(self) -> str | None:
        """None while the durable sink's writes succeed (or there is none); else why not."""
        return None if self._durable is None else self._durable.health()

    def buffered(self) -> dict[tuple[str, str], int]:
        """Items waiting anywhere in this process, by (sink, buffer): the queue and sinks'."""
        waiting = {("recorder", "queue"): len(self._queue)}
        for sink in self.batch_sinks:
            if isinstance(sink, Accounted):
                for buffer, count in sink.buffered().items():
                    waiting[(sink.name, buffer)] = count
        return waiting

    def lost(self) -> dict[tuple[str, str], int]:
        """Items accepted and then lost for good, by (sink, reason); all zero is the goal."""
        stats = self.stats
        lost = {
            ("recorder", "queue_full"): stats.dropped_calls
            + stats.dropped_scores
            + stats.dropped_outcomes,
            ("recorder", "shutdown"): stats.lost_at_shutdown,
            ("sdk", "invalid"): stats.refused,
        }
        for sink in self.batch_sinks:
            if isinstance(sink, Accounted):
                for reason, count in sink.lost().items():
                    lost[(sink.name, reason)] = count
        return lost

    def record_durably(
        self, calls: Sequence[Call], contents: Mapping[str, ContentSource] | None = None
    ) -> list[Call]:
        """Price ``calls``, commit them to the store, then hand them to every other sink.

        Only the calls the store did not have already go on to the other sinks: a batch sent
        again (an exporter's retry, a duplicate export) is stored once and counted once. All of
        ``calls`` are returned, as recorded. Raises what the store raised (`StoreError`) when
        they could not be committed; nothing of the batch is then recorded anywhere, so the
        sender can send it again. Without a durable sink this is `record` for each call (with no
        store to remember ids, a batch sent twice counts twice). ``contents`` maps a call's id to
        its content, for the quality stage; a call stored already is not evaluated again.
        """
        priced = [self._safely_priced(call) for call in calls]
        for call in priced:
            self._recent.add(call)
        contents = contents or {}
        if self._durable is None:
            return [self.record(call, contents.get(call.id)) for call in priced]
        new = self._durable.commit(priced, ())
        self._fan_out_committed(new)
        if contents:
            for call in new:
                self._hand_content(call, contents.get(call.id))
        return priced

    def record_scores_durably(self, scores: Sequence[Score]) -> list[Score]:
        """`record_durably` for scores; returns them as recorded (see `record_score`)."""
        scores = [self._recent.fill(score) for score in scores]
        if self._durable is None:
            return [self.record_score(score) for score in scores]
        self._durable.commit((), scores)
        self._fan_out_committed(scores)
        return scores

    def record_outcome(self, outcome: Outcome) -> Outcome:
        """Hand a labelled outcome to the sinks that keep outcomes (the store, the exporter).

        Never raises. Like a score, an outcome without a model or feature whose call this
        recorder recorded lately gets them from the call.
        """
        try:
            outcome = self._recent.fill(outcome)
            self._accept(outcome)
        except Exception:
            self._internal_error("recording an outcome")
        return outcome

    def record_outcomes_durably(self, outcomes: Sequence[Outcome]) -> list[Outcome]:
        """`record_durably` for outcomes: committed to the store before this returns, or raises."""
        outcomes = [self._recent.fill(outcome) for outcome in outcomes]
        if self._durable is None:
            return [self.record_outcome(outcome) for outcome in outcomes]
        self._durable.commit((), (), outcomes)
        for outcome in outcomes:
            self._accept(_Committed(outcome))
        return outcomes

    def _fan_out_committed(self, items: Sequence[Call | Score]) -> None:
        """Inline sinks now, the other batch sinks later: the durable one has them already."""
        for item in items:
            try:
                for sink in self.inline_sinks:
                    try:
                        if isinstance(item, Call):
                            sink.on_call(item)
                        else:
                            sink.on_score(item)
                    except Exception:
                        self._sink_failed(sink.name, 1)
                self._accept(_Committed(item))
            except Exception:
                self._internal_error("recording what was committed")

    def record(self, call: Call, content: ContentSource | None = None) -> Call:
        """Price ``call``, hand it to every sink, and return it as recorded (with its cost).

        ``content`` (a `CallContent`, or a zero-argument callable returning one or None) goes
        with the recorded call to the quality stage, which reads it on its own thread.
        Never raises: a failure inside aivitals is logged and counted, and the call is returned as
        given.
        """
        try:
            if call.price_source is None:
                call = self._priced(call)
            self._recent.add(call)
            for sink in self.inline_sinks:
                try:
                    sink.on_call(call)
                except Exception:
                    self._sink_failed(sink.name, 1)
            self._accept(call)
            self._hand_content(call, content)
        except Exception:
            self._internal_error("recording a call")
        return call

    def _hand_content(self, call: Call, content: ContentSource | None) -> None:
        if content is not None and self.quality.wants_content:
            self.quality.submit(call, content)

    def record_score(self, score: Score) -> Score:
        """Hand a quality score to every sink and return it as recorded. Never raises.

        A score without a model or feature whose call this recorder recorded lately (the last
        4,096 calls) gets them from the call, so it lands in that model's quality series.
        """
        try:
            score = self._recent.fill(score)
            for sink in self.inline_sinks:
                try:
                    sink.on_score(score)
                except Exception:
                    self._sink_failed(sink.name, 1)
            self._accept(score)
        except Exception:
            self._internal_error("recording a score")
        return score

    def call_started(self, provider: str, model: str) -> None:
        for sink in self._in_flight_observers:
            try:
                sink.call_started(provider, model)
            except Exception:
                self._internal_error("counting a call in flight")

    def call_ended(self, provider: str, model: str) -> None:
        for sink in self._in_flight_observers:
            try:
                sink.call_ended(provider, model)
            except Exception:
                self._internal_error("counting a call in flight")

    def in_flight(
        self, provider: str, model: str
    ) -> tuple[Callable[[], object], Callable[[], object]]:
        """``(started, ended)``: call ``started()`` when a call of this pair starts and
        ``ended()`` once when it ends; the same as `call_started`/`call_ended`, for a hot path
        (the SDK's caller's thread). With one observer that offers its counters (`PrometheusSink`)
        each is one C call (a counter's ``__next__``), with no lock; neither raises."""
        pair = self._flights.get((provider, model))
        if pair is None:
            pair = self._flight_pair(provider, model)
        return pair

    def _flight_pair(
        self, provider: str, model: str
    ) -> tuple[Callable[[], object], Callable[[], object]]:
        observers = self._in_flight_observers
        pair: tuple[Callable[[], object], Callable[[], object]]
        counters = None
        if len(observers) == 1:
            offer = getattr(observers[0], "in_flight_counters", None)
            if offer is not None:
                try:
                    counters = offer(provider, model)
                except Exception:
                    self._internal_error("counting a call in flight")
        if counters is not None:
            pair = (counters[0].__next__, counters[1].__next__)
        elif observers:
            pair = (
                functools.partial(self.call_started, provider, model),
                functools.partial(self.call_ended, provider, model),
            )
        else:
            pair = (_nothing, _nothing)
        if len(self._flights) < _MAX_FLIGHT_PAIRS:  # bounded: past it, made per call
            self._flights[(provider, model)] = pair
        return pair

    def flush(self, timeout_s: float | None = 10.0) -> bool:
        """Wait until every call and score accepted so far has reached the batch sinks.

        The quality stage is flushed first, so the scores of the calls recorded so far are among
        them. Returns False if ``timeout_s`` passed first (the items are still delivered
        afterwards).
        """
        started = time.monotonic()
        sources_done = self._flush_sources(timeout_s)
        quality_done = self.quality.flush(
            None if timeout_s is None else max(0.0, timeout_s - (time.monotonic() - started))
        )
        if timeout_s is not None:
            timeout_s = max(0.0, timeout_s - (time.monotonic() - started))
        target = self._enqueued
        self._wake.set()
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._done:
            while self._delivered < target:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._done.wait(remaining)
        return quality_done and sources_done

    def _flush_sources(self, timeout_s: float | None) -> bool:
        done = True
        for drain in self.flush_first:
            try:
                done = drain(timeout_s) and done
            except Exception:
                self._internal_error("flushing a source")
        return done

    def close(self, timeout_s: float | None = 10.0) -> None:
        """Flush, stop the worker and close the batch sinks. Calls recorded afterwards go nowhere."""
        if self._closed:
            return
        # Sources first, then the quality stage: the scores it still makes for what they held
        # must reach the sinks closed below.
        self._flush_sources(timeout_s)
        self.quality.close(timeout_s)
        flushed = self.flush(timeout_s)
        self._closed = True
        self._wake.set()
        if self._worker is not None:
            self._worker.join(timeout_s)
        if not flushed and self._queue:
            # The worker is stuck in a sink past the deadline; these never reached any sink.
            with self._lock:
                lost = len(self._queue)
                self._queue.clear()
                self.stats.lost_at_shutdown += lost
            log.error(
                "aivitals: %d calls and scores were still waiting for their sinks at shutdown "
                "and are LOST",
                lost,
            )
        for sink in self.batch_sinks:
            try:
                sink.close()
            except Exception:
                self._sink_failed(sink.name, 0)

    def cost_fields(
        self,
        *,
        provider: str,
        model: str,
        usage: TokenUsage,
        at: datetime,
        context_window: int | None = None,
        service_tier: str | None = None,
    ) -> dict[str, Any]:
        """The cost fields of a call (empty when its model has no price).

        Sources that build a `Call` from parts ask for these first, so the call is built and
        validated once instead of being built, priced and rebuilt. ``service_tier`` is the tier
        the provider reported: the catalog's price for it is used when it has one.
        """
        cost = self.pricer.price(
            provider=provider, model=model, usage=usage, at=at, service_tier=service_tier
        )
        if cost is None:
            return {}
        return {
            "cost_usd": cost.total_usd,
            "input_cost_usd": cost.input_usd,
            "output_cost_usd": cost.output_usd,
            "price_source": cost.source,
            "context_window": context_window
            or self.pricer.context_window(provider=provider, model=model),
        }

    def price_draft(self, draft: CallDraft) -> None:
        """Price ``draft`` before it is frozen, so its call is built and validated once.

        Never raises; a draft left unpriced is priced by `record` instead.
        """
        if draft.priced is not None or draft.provider is None or draft.model is None:
            return
        try:
            if draft.cache == "hit":
                draft.priced = dict(_CACHE_HIT)
                return
            draft.priced = self.cost_fields(
                provider=draft.provider,
                model=draft.model,
                usage=draft.usage,
                at=draft.started_at,
                context_window=draft.context_window,
                service_tier=draft.service_tier,
            )
        except Exception:
            self._internal_error("pricing a call")

    def price_fields(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """The cost fields of a call given as fields (`Call`'s keyword arguments, ``started_at``
        set), before it is built: a source that has only fields (the ingest API) then builds and
        validates the call once instead of building it, pricing it and rebuilding it.

        Empty when the fields have a ``price_source`` or the model no price. Never raises: fields
        it cannot price (values the `Call` will refuse, say) get none, and `record` prices the
        call if it is valid after all, counting the failure as it always has.
        """
        if fields.get("price_source") is not None:
            return {}
        try:
            if fields.get("cache") == "hit":
                return dict(_CACHE_HIT)
            usage = TokenUsage(
                input_tokens=fields.get("input_tokens", 0),
                output_tokens=fields.get("output_tokens", 0),
                cached_input_tokens=fields.get("cached_input_tokens", 0),
                cache_write_tokens=fields.get("cache_write_tokens", 0),
                reasoning_tokens=fields.get("reasoning_tokens", 0),
                cache_write_1h_tokens=fields.get("cache_write_1h_tokens", 0),
                server_tool_uses=fields.get("server_tool_uses") or {},
            )
            return self.cost_fields(
                provider=fields["provider"],
                model=fields["model"],
                usage=usage,
                at=fields["started_at"],
                context_window=fields.get("context_window"),
                service_tier=fields.get("service_tier"),
            )
        except Exception:
            return {}

    def _safely_priced(self, call: Call) -> Call:
        if call.price_source is not None:
            return call
        try:
            return self._priced(call)
        except Exception:
            self._internal_error("pricing a call")
            return call

    def _priced(self, call: Call) -> Call:
        if call.cache == "hit":
            return msgspec.structs.replace(call, **_CACHE_HIT)
        usage = TokenUsage(
            input_tokens=call.input_tokens,
            output_tokens=call.output_tokens,
            cached_input_tokens=call.cached_input_tokens,
            cache_write_tokens=call.cache_write_tokens,
            reasoning_tokens=call.reasoning_tokens,
            cache_write_1h_tokens=call.cache_write_1h_tokens,
            server_tool_uses=call.server_tool_uses,
        )
        fields = self.cost_fields(
            provider=call.provider,
            model=call.model,
            usage=usage,
            at=call.started_at,
            context_window=call.context_window,
            service_tier=call.service_tier,
        )
        return msgspec.structs.replace(call, **fields) if fields else call

    def _accept(self, item: Call | Score | Outcome | _Committed) -> None:
        inner = item.item if isinstance(item, _Committed) else item
        if isinstance(inner, Outcome):
            self._accept_outcome(item)  # type: ignore[arg-type]  # an Outcome, or one committed
            return
        is_call = isinstance(inner, Call)
        with self._lock:
            if is_call:
                self.stats.accepted_calls += 1
            else:
                self.stats.accepted_scores += 1
            if not self.batch_sinks:
                return
            if self._closed or len(self._queue) >= self._queue_size:
                if is_call:
                    self.stats.dropped_calls += 1
                else:
                    self.stats.dropped_scores += 1
                full = not self._closed  # after close, a drop is expected: not the sinks' fault
                wake = False
            else:
                full = False
                self._queue.append(item)
                self._enqueued += 1
                # Once, as a batch fills: the worker drains until the queue is empty before it
                # waits again, so a set() on every item past the batch size (an Event's lock and
                # notify each time) would wake nobody.
                wake = len(self._queue) == self._batch_size
        if full:
            self._queue_full()
        elif wake:
            self._wake.set()

    def _accept_outcome(self, item: Outcome | _Committed) -> None:
        with self._lock:
            self.stats.accepted_outcomes += 1
            if not self.batch_sinks:
                return
            if self._closed or len(self._queue) >= self._queue_size:
                self.stats.dropped_outcomes += 1
                full = not self._closed
            else:
                full = False
                self._queue.append(item)
                self._enqueued += 1
        if full:
            self._queue_full()

    def _queue_full(self) -> None:
        """Say so, once a minute: a full queue drops calls, and its counter alone is silent."""
        now = time.monotonic()
        if (
            now - self._last_error_log.get(_QUEUE_FULL, -_ERROR_LOG_INTERVAL_S)
            < _ERROR_LOG_INTERVAL_S
        ):
            return
        self._last_error_log[_QUEUE_FULL] = now
        stats = self.stats
        log.warning(
            "aivitals: the recorder's queue is full (%d calls and scores waiting for %s), so new "
            "ones are dropped (so far: calls %d, scores %d, outcomes %d; "
            "aivitals_dropped_calls_total). The sinks cannot keep up with this rate; the "
            "application is unaffected",
            len(self._queue),
            ", ".join(sink.name for sink in self.batch_sinks),
            stats.dropped_calls,
            stats.dropped_scores,
            stats.dropped_outcomes,
        )

    def _start_worker(self) -> None:
        if not self.batch_sinks and not self._ticking:
            return
        # A daemon thread never holds the interpreter open; close() (registered at exit by
        # configure) is what guarantees delivery.
        self._worker = threading.Thread(target=self._run, name="aivitals-recorder", daemon=True)
        self._worker.start()

    def _after_fork(self) -> None:
        # A forked child (gunicorn-style workers) inherits the queue but not the thread, and a lock
        # that may have been held at the fork.
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._done = threading.Condition()
        self._start_worker()

    def _run(self) -> None:
        while True:
            self._wake.wait(self._interval)
            self._wake.clear()
            self._tick()
            self._drain()
            if self._closed and not self._queue:
                return

    def _tick(self) -> None:
        for sink in self._ticking:
            try:
                sink.tick()
            except Exception:
                self._internal_error("running sink housekeeping")

    def _drain(self) -> None:
        # What is queued now, in batches; what arrives meanwhile waits for the next wake: a
        # full batch (`_accept`), the flush interval or a flush. Draining until the queue was
        # empty wrote whatever arrived during the last write: under steady load a store
        # transaction of a few calls every few milliseconds, each paying a batch's fixed cost
        # (about 5 ms of rollup reads and folds), so the gateway's store writer spent a core on
        # batches of nine calls (docs/benchmarks.md, "The gateway in a closed loop").
        pending = len(self._queue)
        while self._queue and (pending > 0 or len(self._queue) >= self._batch_size):
            take = min(self._batch_size, len(self._queue))
            pending -= take
            calls: list[Call] = []
            scores: list[Score] = []
            fresh_calls: list[Call] = []  # what the durable sink does not have yet
            fresh_scores: list[Score] = []
            outcomes: list[Outcome] = []
            fresh_outcomes: list[Outcome] = []
            for _ in range(take):
                queued = self._queue.popleft()
                item = queued.item if isinstance(queued, _Committed) else queued
                fresh = not isinstance(queued, _Committed)
                if isinstance(item, Call):
                    calls.append(item)
                    if fresh:
                        fresh_calls.append(item)
                elif isinstance(item, Outcome):
                    outcomes.append(item)
                    if fresh:
                        fresh_outcomes.append(item)
                else:
                    scores.append(item)
                    if fresh:
                        fresh_scores.append(item)
            for sink in self.batch_sinks:
                durable = sink is self._durable
                sink_calls = fresh_calls if durable else calls
                sink_scores = fresh_scores if durable else scores
                sink_outcomes = fresh_outcomes if durable else outcomes
                if isinstance(sink, WholeBatchSink):
                    held = len(sink_calls) + len(sink_scores) + len(sink_outcomes)
                    if held:
                        self._deliver(
                            sink.name,
                            held,
                            sink.write_batch,
                            sink_calls,
                            sink_scores,
                            sink_outcomes,
                        )
                    continue
                if sink_calls:
                    self._deliver(sink.name, len(sink_calls), sink.write_calls, sink_calls)
                if sink_scores:
                    self._deliver(sink.name, len(sink_scores), sink.write_scores, sink_scores)
                if sink_outcomes and isinstance(sink, OutcomeSink):
                    self._deliver(sink.name, len(sink_outcomes), sink.write_outcomes, sink_outcomes)
            with self._done:
                self._delivered += len(calls) + len(scores) + len(outcomes)
                self._done.notify_all()

    def _deliver(self, name: str, items: int, write: Callable[..., None], *args: Any) -> None:
        """``write(*args)``; a failure counted as ``items`` items failed."""
        try:
            write(*args)
        except Exception as exc:
            self._sink_failed(name, items, exc)

    def _sink_failed(self, name: str, items: int, exc: Exception | None = None) -> None:
        self.stats.sink_errors[name] += 1
        self.stats.sink_failed_items[name] += items
        now = time.monotonic()
        # One log line per sink per minute: a dead store must not flood the application's logs.
        if now - self._last_error_log.get(name, -_ERROR_LOG_INTERVAL_S) >= _ERROR_LOG_INTERVAL_S:
            self._last_error_log[name] = now
            if getattr(exc, "retryable", False):
                # An outage the sink rides out (it kept the items): its one-line message says
                # what is held and when it retries; a traceback would only repeat our own code.
                log.warning(
                    "aivitals sink %r: %s (%d failures so far); the application is unaffected",
                    name,
                    exc,
                    self.stats.sink_errors[name],
                )
                return
            log.exception(
                "aivitals sink %r failed (%d failures so far); the application is unaffected",
                name,
                self.stats.sink_errors[name],
            )

    def _internal_error(self, doing: str) -> None:
        self.stats.internal_errors += 1
        now = time.monotonic()
        if now - self._last_error_log.get("", -_ERROR_LOG_INTERVAL_S) >= _ERROR_LOG_INTERVAL_S:
            self._last_error_log[""] = now
            log.exception("aivitals failed while %s; the application is unaffected", doing)


def _after_fork(ref: weakref.ref[Recorder]) -> None:
    recorder = ref()
    if recorder is not None:
        recorder._after_fork()
