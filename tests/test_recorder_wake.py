"""The recorder's worker wakes when a batch fills, not only at its interval: once per batch."""

from __future__ import annotations

import time

from aivitals.recorder import Recorder

from .support.helpers import make_call
from .support.sinks import CountingSink, GatedSink


def test_each_batch_that_fills_wakes_the_worker_before_its_interval() -> None:
    sink = CountingSink()
    # An interval no test waits out: only a full batch can bring the calls to the sink.
    recorder = Recorder(batch_sinks=[sink], batch_size=10, flush_interval_s=3600)
    for round_ in range(1, 4):  # each batch fills the emptied queue again: a wake-up each
        for _ in range(10):
            recorder.record(make_call())
        assert sink.wait_for(10 * round_, 30) == 10 * round_
    for _ in range(5):  # a batch not yet full waits for its interval (or a flush)
        recorder.record(make_call())
    assert recorder.flush()
    assert len(sink.calls) == 35
    recorder.close()


def _writing_a_full_batch() -> tuple[GatedSink, Recorder]:
    """A recorder (batches of 10, no interval to speak of) whose worker is inside the write of
    its first full batch, held there until ``sink.release`` is set."""
    sink = GatedSink()
    recorder = Recorder(batch_sinks=[sink], batch_size=10, flush_interval_s=3600)
    for _ in range(10):
        recorder.record(make_call())
    assert sink.entered.wait(30)
    return sink, recorder


def test_calls_that_arrive_during_a_write_wait_for_a_batch_not_a_write_of_their_own() -> None:
    sink, recorder = _writing_a_full_batch()
    for _ in range(3):  # arrive while the full batch is being written
        recorder.record(make_call())
    sink.release.set()
    assert sink.wait_for(10, 30) == 10
    time.sleep(0.3)  # the worker had every chance to write the three on their own
    assert sink.batches == [10]
    assert recorder.flush()
    assert sink.batches == [10, 3]
    recorder.close()


def test_full_batches_that_arrive_during_a_write_go_on_at_once() -> None:
    sink, recorder = _writing_a_full_batch()
    for _ in range(25):  # two full batches and a part, while the first is written
        recorder.record(make_call())
    sink.release.set()
    # A full batch woke the worker: it takes what is queued then, the part with the batches.
    assert sink.wait_for(35, 30) == 35
    assert sink.batches == [10, 10, 10, 5]
    recorder.close()
