"""Score rollups: quality read from them answers what the raw scores joined to their calls answer."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from aivitals.model import Call, Score
from aivitals.query import Filters, Queries, Window, quality
from aivitals.query.quality import score_sums
from aivitals.store.sql import SqlStore

from .support.helpers import make_call
from .test_query_store import T0

BYS = ((), ("model",), ("feature", "prompt_version"), ("status",))
FILTERS = (Filters(), Filters(model="gpt-4o"), Filters(feature=""), Filters(team="core"))


def _dataset(seed: int) -> tuple[list[Call], list[Score]]:
    rng = random.Random(seed)
    calls = []
    for _ in range(300):
        failed = rng.random() < 0.3
        calls.append(
            make_call(
                started_at=T0 + timedelta(milliseconds=rng.randrange(2 * 86_400_000)),
                model=rng.choice(("gpt-4o", "gpt-4o-mini")),
                feature=rng.choice((None, "search", "chat")),
                team=rng.choice(("core", "growth")),
                prompt_version=rng.choice((None, "v1", "v2")),
                status="error" if failed else "ok",
                error_type="timeout" if failed else None,
            )
        )
    scores = []
    for call in rng.sample(calls, 200):
        for name in rng.sample(("refusal", "empty", "judge.relevance"), rng.randint(1, 3)):
            # Eighths add exactly in any order, so rolled and raw sums are equal to the bit.
            scores.append(Score(call_id=call.id, name=name, value=rng.randrange(9) / 8))
    # The same call and name sent twice with different ids: both count, raw and rolled.
    scores.append(Score(call_id=scores[0].call_id, name=scores[0].name, value=1.0))
    return calls, scores


def _reference(
    calls: list[Call], scores: list[Score], window: Window, filters: Filters, by: tuple[str, ...]
) -> dict[tuple[str | None, ...], dict[str, tuple[float, int]]]:
    """The sums computed from the objects alone: each stored score once, with its call."""
    by_id = {c.id: c for c in calls}
    seen: set[str] = set()
    found: dict[tuple[str | None, ...], dict[str, tuple[float, int]]] = {}
    for score in scores:
        if score.id in seen or score.call_id not in by_id:
            continue
        seen.add(score.id)
        call = by_id[score.call_id]
        if not window.start <= call.started_at < window.end:
            continue
        if not all((getattr(call, n) or "") == v for n, v in filters.items()):
            continue
        key = tuple(getattr(call, n) or None for n in by)
        total, count = found.setdefault(key, {}).get(score.name, (0.0, 0))
        found[key][score.name] = (total + score.value, count + 1)
    return found


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_rolled_quality_equals_raw_and_the_objects_whatever_the_write_order(
    store_target: str, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls, scores = _dataset(seed)
    rng = random.Random(seed)
    store = SqlStore.open(store_target)
    # Scores before their calls, with them, after them, and resent (same id): in random batches.
    items: list[Call | Score] = [*calls, *scores, *rng.sample(scores, 40), *rng.sample(calls, 20)]
    rng.shuffle(items)
    for start in range(0, len(items), 37):
        batch = items[start : start + 37]
        store.write(
            [i for i in batch if isinstance(i, Call)], [i for i in batch if isinstance(i, Score)]
        )
    windows = [
        Window(start=T0 + timedelta(hours=3, seconds=17), end=T0 + timedelta(days=1, hours=5)),
        Window(start=T0, end=T0 + timedelta(days=2)),
        Window(start=T0 + timedelta(minutes=61), end=T0 + timedelta(hours=30, minutes=2)),
    ]
    with store.engine.connect() as connection:
        for window in windows:
            for filters in FILTERS:
                for by in BYS:
                    expected = _reference(calls, scores, window, filters, by)
                    rolled = score_sums(connection, window, filters, by)
                    with monkeypatch.context() as patch:
                        patch.setattr(quality, "needs_calls", lambda *_: True)
                        raw = score_sums(connection, window, filters, by)
                    assert rolled == expected == raw
    store.close()


def test_quality_of_whole_hours_outlives_the_raw_scores_as_call_rollups_do(
    store_target: str,
) -> None:
    store = SqlStore.open(store_target)
    call = make_call(started_at=T0 + timedelta(minutes=10), model="gpt-4o")
    store.write([call], [Score(call_id=call.id, name="refusal", value=1.0, source="evaluator")])
    assert store.delete_calls_before(T0 + timedelta(days=1)) == 1  # retention: the raw rows go
    window = Window(start=T0, end=T0 + timedelta(hours=1))
    [group] = Queries(store.engine).quality(window, by=["model"])
    store.close()
    assert group.key == ("gpt-4o",)
    assert (group.rates["refusal"].rate, group.rates["refusal"].count) == (1.0, 1)


def test_a_score_waits_for_its_call_and_a_resent_score_is_counted_once(store_target: str) -> None:
    store = SqlStore.open(store_target)
    call = make_call(started_at=T0 + timedelta(minutes=10))
    early = Score(call_id=call.id, name="refusal", value=1.0)
    store.write([], [early])  # its call is not stored yet
    store.write([call], [early])  # the call arrives, the score is resent with the same id
    store.write([], [Score(call_id=call.id, name="refusal", value=0.0)])  # a second score
    window = Window(start=T0, end=T0 + timedelta(hours=1))
    with store.engine.connect() as connection:
        found = score_sums(connection, window, Filters())
    store.close()
    assert found == {(): {"refusal": (1.0, 2)}}
