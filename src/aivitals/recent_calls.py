"""The attribution of recently recorded calls, so a score that names only its call gets its labels.

``aivitals.score(call_id, "helpfulness", 0.9)`` names the call, not its model or feature; without
them the score's Prometheus series and live quality carry ``model=""``, and per-model quality
stays empty. The recorder remembers the last calls it recorded and fills a score's model and
feature from its call (the score's own values win). The store needs none of this: its reads join
scores to calls by id, which gives the team as well.

>>> from aivitals.model import Call, Score
>>> recent = RecentCalls()
>>> recent.add(Call(id="c1", provider="openai", model="gpt-4o", feature="search", latency_ms=1.0))
>>> filled = recent.fill(Score(call_id="c1", name="helpfulness", value=0.9))
>>> filled.model, filled.feature
('gpt-4o', 'search')
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import TypeVar

import msgspec.structs

from aivitals.model import Call, Outcome, Score

S = TypeVar("S", Score, Outcome)

DEFAULT_CAPACITY = 4096
"""Calls remembered: scores come from evaluators and users, most within minutes of their call."""


class RecentCalls:
    """The (model, feature) of the last ``capacity`` calls, by id. Thread-safe."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self._capacity = capacity
        # A call is recorded once, so insertion order is age: the ordered dict is the queue.
        # OrderedDict, not dict: evicting a dict's oldest key with next(iter(...)) walks past
        # every slot deleted since the table was last rebuilt (thousands, at capacity), while
        # popitem(last=False) is O(1).
        self._calls: OrderedDict[str, tuple[str, str | None]] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, call: Call) -> None:
        """Remember ``call``'s model and feature, forgetting the oldest call past capacity."""
        with self._lock:
            self._calls[call.id] = (call.model, call.feature)
            if len(self._calls) > self._capacity:
                self._calls.popitem(last=False)

    def fill(self, score: S) -> S:
        """``score`` with the model and feature of its call where it has none; else as given."""
        if score.model is not None and score.feature is not None:
            return score
        with self._lock:
            known = self._calls.get(score.call_id)
        return score if known is None else inherit(score, *known)


def inherit(score: S, model: str, feature: str | None) -> S:
    """``score`` with its call's ``model`` and ``feature`` where it has none of its own."""
    filled_model = score.model if score.model is not None else model
    filled_feature = score.feature if score.feature is not None else feature
    if filled_model is score.model and filled_feature is score.feature:
        # Nothing to add (a call without a feature gives none): not rebuilt and checked again,
        # which was a second `Score` for every score the evaluators make.
        return score
    return msgspec.structs.replace(score, model=filled_model, feature=filled_feature)
