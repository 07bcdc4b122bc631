"""The quality stage and the recorder's content hand-off (`aivitals.quality.stage`).

Content goes to the consumers on the stage's worker thread, never the caller's; a full queue
drops and counts; a consumer or a thunk that raises is counted and the rest carry on.
"""

from __future__ import annotations

import threading
from pathlib import Path

from aivitals.content import CallContent
from aivitals.model import Call, Score
from aivitals.quality.stage import QualityStage
from aivitals.recorder import Recorder
from aivitals.sinks.memory import MemorySink
from aivitals.sinks.prometheus import PrometheusSink
from aivitals.sinks.store import StoreSink
from aivitals.store.sql import SqlStore

from .support.helpers import make_call

ANSWER = CallContent(output_text="Paris.", finish_reason="stop")


class Seen:
    """Keeps what it was given, and the thread it ran on."""

    def __init__(self) -> None:
        self.items: list[tuple[Call, CallContent]] = []
        self.threads: set[int] = set()

    def on_content(self, call: Call, content: CallContent) -> None:
        self.threads.add(threading.get_ident())
        self.items.append((call, content))


class Raising:
    def on_content(self, call: Call, content: CallContent) -> None:
        raise RuntimeError("a consumer with a bug")


class Blocking:
    """Holds the worker inside its first call until released."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def on_content(self, call: Call, content: CallContent) -> None:
        self.entered.set()
        assert self.release.wait(10)


def test_the_consumers_and_the_thunk_run_on_the_worker_never_the_callers_thread() -> None:
    recorder = Recorder(batch_sinks=[MemorySink()])
    seen = Seen()
    recorder.quality.register(seen, name="seen")
    thunk_threads: list[int] = []

    def thunk() -> CallContent:
        thunk_threads.append(threading.get_ident())
        return ANSWER

    try:
        recorded = recorder.record(make_call(), thunk)
        recorder.record(make_call(), ANSWER)
        assert recorder.flush()
    finally:
        recorder.close()
    caller = threading.get_ident()
    assert len(seen.items) == 2
    assert seen.items[0][0] == recorded  # the call as recorded: priced
    assert recorded.cost_usd is not None
    assert seen.items[0][1] == ANSWER
    assert thunk_threads and caller not in thunk_threads
    assert seen.threads and caller not in seen.threads


def test_without_a_consumer_nothing_is_built_and_wants_content_is_false() -> None:
    recorder = Recorder(batch_sinks=[MemorySink()])
    called: list[bool] = []

    def thunk() -> CallContent:
        called.append(True)
        return ANSWER

    try:
        assert recorder.wants_content is False
        recorder.record(make_call(), thunk)
        assert recorder.flush()
    finally:
        recorder.close()
    assert called == []


def test_a_full_queue_drops_and_counts_and_never_blocks_the_caller() -> None:
    sink = PrometheusSink()
    recorder = Recorder(inline_sinks=[sink], queue_size=2)
    sink.watch(stats=recorder.stats, buffered=recorder.buffered, lost=recorder.lost)
    blocking = Blocking()
    recorder.quality.register(blocking, name="blocking")
    try:
        recorder.record(make_call(), ANSWER)
        assert blocking.entered.wait(10)  # the worker holds the first one
        for _ in range(5):  # two fit in the queue, three do not
            recorder.record(make_call(), ANSWER)
        dropped = sink.registry.get_sample_value(
            "aivitals_quality_dropped_total", {"reason": "queue_full"}
        )
        assert dropped == 3
        assert recorder.stats.accepted_calls == 6  # every call was recorded all the same
    finally:
        blocking.release.set()
        recorder.close()
    assert recorder.stats.quality.processed == 3


def test_a_failing_consumer_is_counted_and_the_others_still_get_everything() -> None:
    recorder = Recorder(batch_sinks=[MemorySink()])
    seen = Seen()
    recorder.quality.register(Raising(), name="broken")
    recorder.quality.register(seen, name="seen")
    try:
        for _ in range(3):
            recorder.record(make_call(), ANSWER)
        assert recorder.flush()
        # The worker lives on: a later content still arrives.
        recorder.record(make_call(), ANSWER)
        assert recorder.flush()
    finally:
        recorder.close()
    assert len(seen.items) == 4
    assert recorder.stats.quality_errors["broken"] == 4
    assert recorder.stats.internal_errors == 0


def test_a_thunk_that_raises_is_counted_as_content_and_one_returning_none_is_skipped() -> None:
    recorder = Recorder(batch_sinks=[MemorySink()])
    seen = Seen()
    recorder.quality.register(seen, name="seen")

    def broken() -> CallContent:
        raise ValueError("a response shape the source did not expect")

    try:
        recorder.record(make_call(), broken)
        recorder.record(make_call(), lambda: None)
        recorder.record(make_call(), ANSWER)
        assert recorder.flush()
    finally:
        recorder.close()
    assert [content for _, content in seen.items] == [ANSWER]
    assert recorder.stats.quality_errors["content"] == 1


def test_scores_a_consumer_records_reach_the_sinks_by_close() -> None:
    memory = MemorySink()
    recorder = Recorder(batch_sinks=[memory], flush_interval_s=3600)

    class Scoring:
        def on_content(self, call: Call, content: CallContent) -> None:
            recorder.record_score(
                Score(call_id=call.id, name="empty", value=0.0, source="evaluator")
            )

    recorder.quality.register(Scoring(), name="scoring")
    call = recorder.record(make_call(feature="search"), ANSWER)
    recorder.close()
    assert [(s.call_id, s.name, s.feature) for s in memory.scores] == [(call.id, "empty", "search")]


def test_flush_includes_the_scores_of_calls_recorded_so_far() -> None:
    memory = MemorySink()
    recorder = Recorder(batch_sinks=[memory], flush_interval_s=3600)

    class Scoring:
        def on_content(self, call: Call, content: CallContent) -> None:
            recorder.record_score(Score(call_id=call.id, name="x", value=1.0))

    recorder.quality.register(Scoring(), name="scoring")
    try:
        recorder.record(make_call(), ANSWER)
        assert recorder.flush()
        assert len(memory.scores) == 1
    finally:
        recorder.close()


def test_content_handed_after_close_is_dropped_and_counted() -> None:
    recorder = Recorder(batch_sinks=[MemorySink()])
    seen = Seen()
    recorder.quality.register(seen, name="seen")
    recorder.close()
    recorder.record(make_call(), ANSWER)
    assert seen.items == []
    assert recorder.stats.quality_dropped["shutdown"] == 1


def test_record_durably_hands_content_once_a_batch_sent_again_is_not_evaluated_again(
    tmp_path: Path,
) -> None:
    store = SqlStore.open(tmp_path / "calls.db")
    recorder = Recorder(batch_sinks=[StoreSink(store)])
    seen = Seen()
    recorder.quality.register(seen, name="seen")
    calls = [make_call(), make_call()]
    contents = {calls[0].id: ANSWER}  # the second came without content
    try:
        recorder.record_durably(calls, contents)
        recorder.record_durably(calls, contents)  # the exporter's retry
        assert recorder.flush()
    finally:
        recorder.close()
        store.close()
    assert [(call.id, content) for call, content in seen.items] == [(calls[0].id, ANSWER)]


def test_record_durably_without_a_store_hands_content_too() -> None:
    recorder = Recorder(batch_sinks=[MemorySink()])
    seen = Seen()
    recorder.quality.register(seen, name="seen")
    call = make_call()
    try:
        recorder.record_durably([call], {call.id: ANSWER})
        assert recorder.flush()
    finally:
        recorder.close()
    assert [c.id for c, _ in seen.items] == [call.id]


def test_registering_a_name_again_replaces_and_unregister_removes() -> None:
    stage = QualityStage()
    first, second = Seen(), Seen()
    stage.register(first, name="x")
    stage.register(second, name="x")
    assert stage.consumers == {"x": second}
    stage.unregister("x")
    assert stage.wants_content is False
    stage.close()


def test_a_consumer_is_flushed_then_closed_once_and_never_flushed_after_close() -> None:
    said: list[str] = []

    class Closing(Seen):
        def flush(self, timeout_s: float | None) -> bool:
            said.append("flush")
            return True

        def close(self) -> None:
            said.append("close")

    recorder = Recorder(batch_sinks=[MemorySink()])
    recorder.quality.register(Closing(), name="closing")
    recorder.close()
    recorder.flush()
    assert said == ["flush", "close"]
