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


def test_a_score_is_filled_where_it_lacks_a_label_and_kept_as_it_is_where_nothing_is_new() -> None:
    recent = RecentCalls(capacity=3)
    recent.add(Call(id="c1", provider="openai", model="gpt-4o", latency_ms=1.0))
    recent.add(Call(id="c2", provider="openai", model="gpt-4o", latency_ms=1.0, feature="chat"))
    bare = Score(call_id="c2", name="empty", value=1.0)
    filled = recent.fill(bare)
    assert (filled.model, filled.feature) == ("gpt-4o", "chat")
    assert (bare.model, bare.feature) == (None, None)
    own = Score(call_id="c2", name="empty", value=1.0, model="mine", feature=None)
    assert (recent.fill(own).model, recent.fill(own).feature) == ("mine", "chat")
    # The call has no feature and the score has its model: nothing to add, the same score.
    labelled = Score(call_id="c1", name="empty", value=1.0, model="gpt-4o")
    assert recent.fill(labelled) is labelled
    unknown = Score(call_id="nobody", name="empty", value=1.0)
    assert recent.fill(unknown) is unknown
