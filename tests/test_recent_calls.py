"""`RecentCalls` forgets its oldest calls past capacity, and only those."""

from __future__ import annotations

from aivitals.model import Call, Score
from aivitals.recent_calls import RecentCalls


def test_the_oldest_calls_are_forgotten_past_capacity() -> None:
    recent = RecentCalls(capacity=3)
    for index in range(5):
        recent.add(Call(id=f"c{index}", provider="openai", model=f"m{index}", latency_ms=1.0))
    models = [
        recent.fill(Score(call_id=f"c{index}", name="helpfulness", value=0.5)).model
        for index in range(5)
    ]
    assert models == [None, None, "m2", "m3", "m4"]
    # Many more than the capacity, as a server records them: still the last three only.
    for index in range(5, 20_000):
        recent.add(Call(id=f"c{index}", provider="openai", model=f"m{index}", latency_ms=1.0))
    kept = [
        index
        for index in range(20_000)
        if recent.fill(Score(call_id=f"c{index}", name="helpfulness", value=0.5)).model
    ]
    assert kept == [19_997, 19_998, 19_999]
