from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import threading
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

import pytest

from aivitals.model import Call, Score
from aivitals.recorder import Recorder
from aivitals.sinks.memory import MemorySink
from aivitals.sinks.prometheus import PrometheusSink

from .support.helpers import make_call
from .support.sinks import GatedSink


class BrokenSink:
    name = "broken"

    def write_calls(self, calls: Sequence[Call]) -> None:
        raise ConnectionError("store is down")

    def write_scores(self, scores: Sequence[Score]) -> None:
        raise ConnectionError("store is down")

    def close(self) -> None:
        raise ConnectionError("store is down")


class BrokenInline:
    name = "broken-inline"

    def on_call(self, call: Call) -> None:
        raise RuntimeError("bug in a sink")

    def on_score(self, score: Score) -> None:
        raise RuntimeError("bug in a sink")


def test_every_sink_gets_the_priced_call() -> None:
    memory = MemorySink()
    recorder = Recorder(batch_sinks=[memory])
    returned = recorder.record(make_call(input_tokens=1000, output_tokens=100))
    assert recorder.flush()
    # gpt-4o-mini: 1000 x 0.15 + 100 x 0.6 = 210 µ$, worked by hand.
    assert returned.cost_usd == Decimal("0.00021")
    assert memory.calls == [returned]
    assert returned.price_source is not None and "gpt-4o-mini" in returned.price_source
    assert returned.context_window == 128000
    recorder.close()
    assert memory.closed


def test_unknown_model_recorded_with_null_cost() -> None:
    memory = MemorySink()
    prometheus = PrometheusSink()
    recorder = Recorder(inline_sinks=[prometheus], batch_sinks=[memory])
    recorder.record(make_call(model="homegrown-llm-1"))
    recorder.flush()
    assert memory.calls[0].cost_usd is None
    assert memory.calls[0].price_source is None
    labels = {"provider": "openai", "model": "homegrown-llm-1"}
    assert prometheus.registry.get_sample_value("aivitals_unpriced_calls_total", labels) == 1.0
    recorder.close()


def test_a_call_priced_upstream_is_not_repriced() -> None:
    recorder = Recorder()
    priced = make_call(cost_usd=Decimal("1.5"), price_source="upstream")
    assert recorder.record(priced).cost_usd == Decimal("1.5")


def test_failing_batch_sink_never_raises_and_is_counted() -> None:
    memory = MemorySink()
    recorder = Recorder(batch_sinks=[BrokenSink(), memory])
    for _ in range(5):
        recorder.record(make_call())
    recorder.record_score(Score(call_id="x", name="q", value=0.5))
    assert recorder.flush()
    assert len(memory.calls) == 5, "a broken sink must not starve the others"
    assert recorder.stats.sink_errors["broken"] >= 2
    assert recorder.stats.sink_failed_items["broken"] == 6
    recorder.close()  # close() of the broken sink raises inside: still no exception here


def test_failing_inline_sink_never_raises() -> None:
    memory = MemorySink()
    recorder = Recorder(inline_sinks=[BrokenInline()], batch_sinks=[memory])
    recorder.record(make_call())
    recorder.record_score(Score(call_id="x", name="q", value=0.5))
    recorder.flush()
    assert len(memory.calls) == 1 and len(memory.scores) == 1
    assert recorder.stats.sink_errors["broken-inline"] == 2
    recorder.close()


def test_full_queue_drops_and_counts_without_blocking() -> None:
    gated = GatedSink()
    recorder = Recorder(batch_sinks=[gated], queue_size=10, batch_size=1, flush_interval_s=0.01)
    recorder.record(make_call())
    assert gated.entered.wait(5)  # the worker holds one call and is blocked in the sink
    for _ in range(25):
        recorder.record(make_call())
    assert recorder.stats.dropped_calls == 15
    assert recorder.queue_depth == 10
    gated.release.set()
    assert recorder.flush()
    assert len(gated.calls) == 11
    recorder.close()


def test_flush_waits_for_every_accepted_call_across_threads() -> None:
    memory = MemorySink()
    recorder = Recorder(batch_sinks=[memory], batch_size=64, flush_interval_s=5.0)

    def work() -> None:
        for _ in range(500):
            recorder.record(make_call())

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert recorder.flush(timeout_s=10)
    assert len(memory.calls) == 2000
    assert len({c.id for c in memory.calls}) == 2000
    recorder.close()


def test_calls_after_close_are_counted_as_dropped() -> None:
    memory = MemorySink()
    recorder = Recorder(batch_sinks=[memory])
    recorder.close()
    recorder.record(make_call())
    assert recorder.stats.dropped_calls == 1


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="queue_size"):
        Recorder(queue_size=0)


def test_exit_flush_loses_nothing(tmp_path: Path) -> None:
    """A process that records and exits at once still delivers every call (the at-exit flush)."""
    out = tmp_path / "calls.jsonl"
    script = textwrap.dedent(
        f"""
        import time, aivitals
        from aivitals.sinks.log import JsonLogSink

        class SlowSink(JsonLogSink):
            def write_calls(self, calls):
                time.sleep(0.2)  # slower than the process takes to reach its end
                super().write_calls(calls)

        aivitals.configure(sinks=[SlowSink(path={str(out)!r})], flush_interval_s=30, batch_size=50)
        for i in range(300):
            aivitals.record(aivitals.Call(provider="openai", model="gpt-4o", latency_ms=float(i)))
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    lines = out.read_text().splitlines()
    assert len(lines) == 300


def test_a_closed_recorder_is_not_kept_alive_by_its_fork_hook() -> None:
    import gc
    import weakref

    recorder = Recorder(batch_sinks=[MemorySink()], flush_interval_s=0.05)
    recorder.close()
    ref = weakref.ref(recorder)
    del recorder
    gc.collect()
    assert ref() is None


def test_a_full_queue_says_so_once_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    gated = GatedSink()
    recorder = Recorder(batch_sinks=[gated], queue_size=2, batch_size=1, flush_interval_s=0.01)
    recorder.record(make_call())
    assert gated.entered.wait(5)
    with caplog.at_level(logging.WARNING, logger="aivitals.recorder"):
        for _ in range(6):
            recorder.record(make_call())
        recorder.record_score(Score(call_id="x", name="q", value=0.5))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "queue is full (2 calls and scores waiting for gated)" in warnings[0]
    assert "(so far: calls 1, scores 0, outcomes 0;" in warnings[0]
    assert recorder.stats.dropped_calls == 4
    gated.release.set()
    recorder.close()
    assert recorder.stats.dropped_scores == 1
