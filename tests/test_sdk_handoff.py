"""The SDK records a tracked call off the caller's thread (`aivitals.sdk.handoff`): once, in
order, before any flush returns, at exit, across a fork, and on the caller's thread when too
many wait."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

import aivitals
from aivitals.draft import CallDraft
from aivitals.model import Call, Score
from aivitals.sdk import handoff as handoff_module
from aivitals.sdk.handoff import handoff
from aivitals.sdk.runtime import get_runtime, reset
from aivitals.sinks.memory import MemorySink


class Witness:
    """An inline sink that notes which thread recorded each call, and can hold the worker."""

    name = "witness"

    def __init__(self) -> None:
        self.threads: dict[str, str] = {}
        self.order: list[str] = []
        self.recorded: Counter[str] = Counter()
        self.gate = threading.Event()
        self.gate.set()
        self.holding = threading.Event()  # set while the worker waits at the gate

    def on_call(self, call: Call) -> None:
        thread = threading.current_thread().name
        if thread == "aivitals-sdk" and not self.gate.is_set():
            self.holding.set()
            self.gate.wait(10)
        self.threads[call.id] = thread
        self.order.append(call.model)
        self.recorded[call.id] += 1

    def on_score(self, score: Score) -> None:
        pass


@pytest.fixture
def witness() -> Iterator[tuple[Witness, MemorySink]]:
    sink = Witness()
    memory = MemorySink()
    aivitals.configure(sinks=[sink, memory], store=False, endpoint=False, evaluators=False)
    yield sink, memory
    sink.gate.set()
    reset()


def tracked(model: str = "gpt-4o-mini") -> aivitals.TrackedCall:
    with aivitals.track(model=model, provider="openai") as call:
        call.set_usage(input_tokens=1000, output_tokens=100)
    return call


def test_reading_recorded_before_the_worker_records_it_there_once(
    witness: tuple[Witness, MemorySink],
) -> None:
    sink, memory = witness
    # Holding the hand-off's lock keeps the worker from claiming the call: the read must.
    with handoff.lock:
        call = tracked()
        recorded = call.recorded
        assert recorded is not None and sink.threads[call.id] == threading.current_thread().name
    assert str(recorded.cost_usd) == "0.00021"  # 1000 in at 0.15/M + 100 out at 0.60/M
    assert call.recorded is recorded
    assert aivitals.flush()
    assert sink.recorded[call.id] == 1
    assert [made.id for made in memory.calls] == [call.id]


def test_the_worker_records_what_nobody_read(witness: tuple[Witness, MemorySink]) -> None:
    sink, memory = witness
    calls = [tracked() for _ in range(50)]
    assert aivitals.flush()
    assert {sink.threads[call.id] for call in calls} == {"aivitals-sdk"}
    assert sorted(made.id for made in memory.calls) == sorted(call.id for call in calls)
    assert all(call.recorded is not None for call in calls)
    assert set(sink.recorded.values()) == {1}


def test_flush_waits_for_the_calls_handed_over_and_keeps_their_order(
    witness: tuple[Witness, MemorySink],
) -> None:
    sink, memory = witness
    sink.gate.clear()
    first = tracked("gpt-4o")
    assert sink.holding.wait(10)  # the worker is inside the first call's record
    rest = [tracked(f"m-{i}") for i in range(20)]
    assert handoff.pending() == 20
    done: list[bool] = []
    flusher = threading.Thread(target=lambda: done.append(aivitals.flush(timeout_s=30)))
    flusher.start()
    flusher.join(0.2)
    assert flusher.is_alive() and not done  # still waiting: nothing was recorded yet
    sink.gate.set()
    flusher.join(30)
    assert done == [True]
    assert handoff.pending() == 0
    assert sink.order == ["gpt-4o", *(f"m-{i}" for i in range(20))]
    assert len(memory.calls) == 1 + len(rest) == len({made.id for made in memory.calls})
    assert first.recorded is not None


def test_a_full_hand_off_records_on_the_callers_thread(
    witness: tuple[Witness, MemorySink], monkeypatch: pytest.MonkeyPatch
) -> None:
    sink, memory = witness
    monkeypatch.setattr(handoff_module, "MAX_PENDING", 3)
    sink.gate.clear()
    held = tracked()
    assert sink.holding.wait(10)
    before = handoff.synchronous
    calls = [tracked() for _ in range(10)]
    here = threading.current_thread().name
    # Three wait for the worker; the seven that found no room were recorded as they ended.
    assert [sink.threads.get(call.id) for call in calls] == [None] * 3 + [here] * 7
    assert handoff.synchronous - before == 7
    runtime = get_runtime()
    assert runtime.prometheus is not None
    scraped = runtime.prometheus.registry.get_sample_value
    assert scraped("aivitals_sdk_synchronous_records_total") == before + 7
    assert handoff.synchronous - before == 7  # reads (the scrape's too) do not count
    assert all(call.recorded is not None for call in calls[3:])
    sink.gate.set()
    assert aivitals.flush()
    assert len(memory.calls) == 11 and set(sink.recorded.values()) == {1}
    assert held.id in sink.recorded


def test_the_in_flight_gauge_falls_on_the_callers_thread(
    witness: tuple[Witness, MemorySink],
) -> None:
    runtime = get_runtime()
    assert runtime.prometheus is not None
    get = runtime.prometheus.registry.get_sample_value
    labels = {"provider": "openai", "model": "gpt-4o-mini"}
    ok = {**labels, "operation": "chat", "status": "ok", "error_type": ""}
    with handoff.lock:  # the worker records nothing meanwhile
        with aivitals.track(model="gpt-4o-mini", provider="openai"):
            assert get("aivitals_requests_in_flight", labels) == 1
        assert get("aivitals_requests_in_flight", labels) == 0
        assert get("aivitals_requests_total", ok) is None  # not recorded yet
    assert aivitals.flush()
    assert get("aivitals_requests_total", ok) == 1


def test_the_in_flight_gauge_is_exact_after_concurrent_tracked_calls(
    witness: tuple[Witness, MemorySink],
) -> None:
    runtime = get_runtime()
    assert runtime.prometheus is not None
    get = runtime.prometheus.registry.get_sample_value
    labels = {"provider": "openai", "model": "gpt-4o"}
    release = threading.Event()
    entered = threading.Barrier(5)

    def work() -> None:
        for _ in range(300):
            with aivitals.track(model="gpt-4o", provider="openai"):
                get("aivitals_requests_in_flight", labels)  # scrapes in between
        with aivitals.track(model="gpt-4o", provider="openai"):  # one each stays open
            entered.wait()
            release.wait()

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=work) for _ in range(4)]
        for thread in threads:
            thread.start()
        entered.wait()
        assert get("aivitals_requests_in_flight", labels) == 4
        release.set()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert get("aivitals_requests_in_flight", labels) == 0
    assert aivitals.flush()
    ok = {**labels, "operation": "chat", "status": "ok", "error_type": ""}
    assert get("aivitals_requests_total", ok) == 4 * 301


def test_a_tracked_calls_start_is_the_wall_clock_at_its_start(
    witness: tuple[Witness, MemorySink],
) -> None:
    _, memory = witness
    before = datetime.now(UTC)
    with aivitals.track(model="gpt-4o-mini", provider="openai"):
        after = datetime.now(UTC)
    assert aivitals.flush()
    (call,) = memory.calls
    assert call.started_at.tzinfo is not None
    assert before <= call.started_at <= after
    unstarted = aivitals.TrackedCall(model="gpt-4o-mini", provider="openai")
    assert unstarted.started_at == datetime.fromtimestamp(0, UTC)
    unstarted.started_at = before
    assert unstarted.started_at == before


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
def test_a_fork_records_the_parents_calls_in_the_parent_only(
    witness: tuple[Witness, MemorySink],
) -> None:
    sink, _ = witness
    sink.gate.clear()
    calls = [tracked() for _ in range(30)]
    assert sink.holding.wait(10)
    # The fork's own drain waits for the worker: open the gate from another thread meanwhile.
    threading.Timer(0.3, sink.gate.set).start()
    pid = os.fork()
    if pid == 0:  # the child: the parent's 30 came across recorded, none is recorded again
        code = 1
        try:
            inherited = sum(sink.recorded.values())
            child = tracked("gpt-4o")
            if aivitals.flush(timeout_s=10) and handoff.pending() == 0:
                recorded = sink.recorded
                code = (
                    0
                    if (inherited, sum(recorded.values()), recorded[child.id])
                    == (
                        30,
                        31,
                        1,
                    )
                    else 2
                )
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert aivitals.flush()
    assert [sink.recorded[call.id] for call in calls] == [1] * 30


def test_calls_still_waiting_at_exit_are_recorded(tmp_path: Path) -> None:
    log = tmp_path / "calls.jsonl"
    script = textwrap.dedent(
        f"""
        import aivitals
        aivitals.configure(log_to={str(log)!r}, store=False, endpoint=False, evaluators=False)
        for _ in range(3000):
            with aivitals.track(model="gpt-4o-mini", provider="openai") as call:
                call.set_usage(input_tokens=10, output_tokens=1)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert len(log.read_text().splitlines()) == 3000


def test_a_new_handle_starts_as_a_new_draft_does() -> None:
    # TrackedCall keeps the draft's starting values as class defaults instead of setting them.
    handle = aivitals.TrackedCall(model="gpt-4o", provider="openai")
    draft = CallDraft(model="gpt-4o", provider="openai")
    skip = {"id", "started_at"}  # a new id each; the handle's start time is set when it starts
    names = [name for name in CallDraft.__slots__ if name not in skip]
    assert {name: getattr(handle, name) for name in names} == {
        name: getattr(draft, name) for name in names
    }
    assert handle.fields(latency_ms=1.0).keys() == draft.fields(latency_ms=1.0).keys()
