from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from aivitals.model import Score
from aivitals.query import Filters, Queries, QueryError, Window

from .support.helpers import make_call
from .support.postgres import StoreTargets
from .test_query_store import T0, write_store

DAY = Window(start=T0, end=T0 + timedelta(days=1))


def test_calls_come_newest_first_a_page_at_a_time_with_their_scores(
    store_targets: StoreTargets,
) -> None:
    calls = [
        make_call(
            started_at=T0 + timedelta(minutes=i),
            user="ann" if i % 2 else "bob",
            cost_usd=Decimal("0.001") * i,
            tags={"run": str(i)},
        )
        for i in range(7)
    ]
    # Two calls in the same millisecond: the larger id comes first.
    twins = sorted(
        (make_call(started_at=T0 + timedelta(minutes=3, microseconds=10)) for _ in range(2)),
        key=lambda c: c.id,
    )
    late = T0 + timedelta(days=3)
    scores = [
        Score(call_id=calls[5].id, name="tone", value=0.2, created_at=late),
        Score(call_id=calls[5].id, name="relevance", value=0.8, created_at=T0),
        Score(call_id=calls[0].id, name="relevance", value=1.0, created_at=late),
    ]
    outside = make_call(started_at=T0 + timedelta(days=1))
    queries = Queries(write_store(store_targets(), [*calls, *twins, outside], scores))

    pages = [queries.calls(DAY, limit=4, offset=offset) for offset in (0, 4, 8)]
    order = [item.call.id for page in pages for item in page]
    newest_first = [c.id for c in reversed(calls[4:])]
    assert order == [*newest_first, twins[1].id, twins[0].id, *(c.id for c in reversed(calls[:4]))]
    assert [len(page) for page in pages] == [4, 4, 1]

    by_id = {item.call.id: item for page in pages for item in page}
    assert [(s.name, s.value) for s in by_id[calls[5].id].scores] == [
        ("relevance", 0.8),
        ("tone", 0.2),
    ]
    assert by_id[calls[0].id].scores == (scores[2],)
    assert by_id[calls[1].id].scores == ()
    stored = by_id[calls[6].id].call
    assert stored.cost_usd == Decimal("0.006") and stored.tags == {"run": "6"}
    assert stored.started_at == calls[6].started_at

    assert [item.call.user for item in queries.calls(DAY, Filters(user="ann"))] == ["ann"] * 3
    assert queries.calls(DAY, limit=0) == []
    assert queries.calls(DAY, offset=100) == []


def test_calls_refuse_a_negative_page(store_targets: StoreTargets) -> None:
    queries = Queries(write_store(store_targets(), []))
    with pytest.raises(QueryError, match="0 or more"):
        queries.calls(DAY, limit=-1)
