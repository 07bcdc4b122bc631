"""Queries over a store filled by the real writer, in shuffled batches with a retry, agree with
answers computed from the calls themselves."""

from __future__ import annotations

import random
from datetime import timedelta

from aivitals.query import Filters, Queries, Window
from aivitals.store.sql import SqlStore

from .test_query_store import assert_measures, in_window, passes, random_dataset, reference


def test_queries_over_batches_written_by_sql_store(store_target: str) -> None:
    data = random_dataset(12, 300, days=2)
    store = SqlStore.open(store_target)
    try:
        calls = list(data.calls)
        random.Random(1).shuffle(calls)
        for start in range(0, len(calls), 37):
            store.write(calls[start : start + 37], [])
        store.write(calls[:40], data.scores)  # a retried batch is not counted twice
        queries = Queries(store.engine)
        moments = sorted(c.started_at for c in data.calls)
        rng = random.Random(2)
        for _ in range(8):
            first, second = sorted(rng.sample(range(len(moments)), 2))
            window = Window(
                start=moments[first], end=moments[second] + timedelta(milliseconds=first % 2)
            )
            for filters in (Filters(), Filters(team="core"), Filters(user="bob")):
                chosen = [
                    c
                    for c in data.calls
                    if in_window(c, window.start, window.end) and passes(c, filters)
                ]
                summary = queries.report(window, filters, ["model"]).summary
                assert_measures(
                    summary,
                    reference(chosen, data.scores),
                    sketch=summary.percentiles == "sketch",
                )
    finally:
        store.close()
