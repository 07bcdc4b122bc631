"""Batch sinks that let a test watch and hold the recorder's worker."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from aivitals.model import Call
from aivitals.sinks.memory import MemorySink


class CountingSink(MemorySink):
    """A memory sink that says when calls arrive, so a test can wait for them."""

    name = "counting"

    def __init__(self) -> None:
        super().__init__()
        self.arrived = threading.Condition()
        self.batches: list[int] = []

    def write_calls(self, calls: Sequence[Call]) -> None:
        self.batches.append(len(calls))
        super().write_calls(calls)
        with self.arrived:
            self.arrived.notify_all()

    def wait_for(self, count: int, timeout_s: float) -> int:
        """The calls held once ``count`` have arrived, or ``timeout_s`` has passed."""
        deadline = time.monotonic() + timeout_s
        with self.arrived:
            while len(self.calls) < count and time.monotonic() < deadline:
                self.arrived.wait(0.05)
        return len(self.calls)


class GatedSink(CountingSink):
    """Holds the worker in each write until ``release`` is set (``entered`` says it is in one),
    so a test can fill the queue, or add calls, while a batch is being written."""

    name = "gated"

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def write_calls(self, calls: Sequence[Call]) -> None:
        self.entered.set()
        self.release.wait(30)
        super().write_calls(calls)
