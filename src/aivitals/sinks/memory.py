"""A sink that keeps what it receives in lists: for tests, yours and ours."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from aivitals.model import Call, Score


class MemorySink:
    """A batch sink holding every call and score it was given, in order.

    >>> sink = MemorySink()
    >>> sink.calls, sink.scores
    ([], [])
    """

    name = "memory"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: list[Call] = []
        self.scores: list[Score] = []
        self.closed = False

    def write_calls(self, calls: Sequence[Call]) -> None:
        with self._lock:
            self.calls.extend(calls)

    def write_scores(self, scores: Sequence[Score]) -> None:
        with self._lock:
            self.scores.extend(scores)

    def close(self) -> None:
        self.closed = True

    def clear(self) -> None:
        with self._lock:
            self.calls.clear()
            self.scores.clear()
