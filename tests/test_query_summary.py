from __future__ import annotations

import dataclasses
from datetime import timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import pytest

from aivitals.model import Score
from aivitals.query import Filters, Measures, Queries, Window, quality
from aivitals.query.quality import score_sums

from .support.helpers import make_call
from .support.postgres import StoreTargets
from .test_query_store import (
    T0,
    assert_measures,
    in_window,
    passes,
    random_dataset,
    reference,
    write_store,
)

DAY = Window(start=T0, end=T0 + timedelta(days=1))


def test_an_empty_store_and_an_empty_window_give_zeros_and_nones(
    store_targets: StoreTargets,
) -> None:
    queries = Queries(write_store(store_targets(), []))
    summary = queries.summary(DAY)
    assert (summary.calls, summary.total_cost_usd, summary.unpriced_calls) == (0, Decimal(0), 0)
    assert summary.success_rate is None and summary.avg_cost_usd is None
    assert summary.latency_p50_ms is None and summary.quality == {}
    assert queries.breakdown(DAY, Filters(), ["model"]) == []

    stored = Queries(write_store(store_targets("one"), [make_call(started_at=T0)]))
    nothing = Window(start=T0 + timedelta(hours=1), end=T0 + timedelta(hours=1))
    assert stored.summary(nothing).calls == 0
    assert stored.summary(Window(start=T0 - timedelta(days=2), end=T0)).calls == 0


def test_a_single_call_by_hand(store_targets: StoreTargets) -> None:
    call = make_call(
        started_at=T0 + timedelta(hours=1, minutes=30, seconds=15.5),
        latency_ms=812.5,
        ttft_ms=200.0,
        input_tokens=1200,
        cached_input_tokens=1024,
        output_tokens=80,
        cost_usd=Decimal("0.00123"),
        cache="hit",
    )
    summary = Queries(write_store(store_targets(), [call])).summary(DAY)
    assert (summary.calls, summary.ok, summary.errors, summary.cancelled) == (1, 1, 0, 0)
    assert summary.success_rate == 1.0
    assert summary.total_cost_usd == Decimal("0.00123")
    assert summary.avg_cost_usd == Decimal("0.00123")
    # 0.00123 * 1000 / 1280 = 0.0009609375, half-even to the nano-dollar.
    assert summary.cost_per_1k_tokens == Decimal("0.000960938")
    assert (summary.input_tokens, summary.cached_input_tokens, summary.output_tokens) == (
        1200,
        1024,
        80,
    )
    assert summary.latency_avg_ms == 812.5 and summary.ttft_avg_ms == 200.0
    assert summary.tokens_per_second == pytest.approx(80 * 1000 / 612.5)
    assert summary.cache_hit_ratio == 1.0
    assert summary.percentiles == "sketch"
    for value in (summary.latency_p50_ms, summary.latency_p95_ms, summary.latency_p99_ms):
        assert value == pytest.approx(812.5, rel=0.01)
    assert summary.ttft_p50_ms == pytest.approx(200.0, rel=0.01)


def test_unpriced_calls_are_counted_and_kept_out_of_the_sums(store_targets: StoreTargets) -> None:
    calls = [
        make_call(started_at=T0 + timedelta(minutes=5), cost_usd=Decimal("0.002")),
        make_call(started_at=T0 + timedelta(minutes=6), cost_usd=Decimal("0.004")),
        make_call(started_at=T0 + timedelta(minutes=7), model="local-llama", cost_usd=None),
    ]
    queries = Queries(write_store(store_targets(), calls))
    summary = queries.summary(DAY)
    assert summary.calls == 3 and summary.unpriced_calls == 1
    assert summary.total_cost_usd == Decimal("0.006")
    assert summary.avg_cost_usd == Decimal("0.003")
    by_model = {row.group["model"]: row for row in queries.breakdown(DAY, Filters(), ["model"])}
    assert by_model["local-llama"].unpriced_calls == 1
    assert by_model["local-llama"].total_cost_usd == 0
    assert by_model["local-llama"].avg_cost_usd is None
    assert by_model["local-llama"].cost_per_1k_tokens is None


def test_errors_only(store_targets: StoreTargets) -> None:
    calls = [
        make_call(
            started_at=T0 + timedelta(seconds=90 * i),
            status="error",
            error_type="rate_limit" if i % 2 else "timeout",
            output_tokens=0,
            latency_ms=50.0 + i,
        )
        for i in range(6)
    ]
    queries = Queries(write_store(store_targets(), calls))
    summary = queries.summary(DAY)
    assert (summary.calls, summary.ok, summary.errors) == (6, 0, 6)
    assert summary.success_rate == 0.0
    assert summary.tokens_per_second is None
    rows = queries.breakdown(DAY, Filters(), ["error_type"])
    assert {row.group["error_type"]: row.errors for row in rows} == {"rate_limit": 3, "timeout": 3}
    assert queries.summary(DAY, Filters(status="ok")).calls == 0


def test_scores_count_with_their_calls_whenever_they_arrive(store_targets: StoreTargets) -> None:
    inside = make_call(started_at=T0 + timedelta(hours=23, minutes=59, seconds=59))
    other = make_call(started_at=T0 + timedelta(hours=2), feature="chat")
    outside = make_call(started_at=T0 + timedelta(days=1, seconds=1))
    later = T0 + timedelta(days=5)
    scores = [
        Score(call_id=inside.id, name="relevance", value=0.9, created_at=later),
        Score(call_id=inside.id, name="tone", value=4.0, max_value=5.0, created_at=later),
        Score(call_id=other.id, name="relevance", value=0.5, created_at=T0),
        Score(call_id=outside.id, name="relevance", value=0.0, created_at=T0),
        Score(call_id="never-stored", name="relevance", value=0.1, created_at=T0),
    ]
    queries = Queries(write_store(store_targets(), [inside, other, outside], scores))
    assert queries.summary(DAY).quality == {"relevance": pytest.approx(0.7), "tone": 4.0}
    rows = queries.breakdown(DAY, Filters(), ["feature"])
    assert {row.group["feature"]: row.quality for row in rows} == {
        None: {"relevance": 0.9, "tone": 4.0},
        "chat": {"relevance": 0.5},
    }


def assert_same_rows(got: list[Any], expected: list[Any]) -> None:
    """The same rows from two reads: every field equal, floats to 1e-12 relative. PostgreSQL adds
    a float column's rows in the order its plan meets them, and the report's read (with the
    summary beside the breakdown) is another plan than the breakdown's own, so a float mean can
    differ in its last bit (CI saw 1803.3480966291206 against ...204 tokens a second)."""
    assert len(got) == len(expected)
    for one, other in zip(got, expected, strict=True):
        for field in dataclasses.fields(one):
            a, b = getattr(one, field.name), getattr(other, field.name)
            if isinstance(a, float) and isinstance(b, float):
                assert a == pytest.approx(b, rel=1e-12, nan_ok=True), field.name
            elif isinstance(a, dict) and isinstance(b, dict):
                assert a.keys() == b.keys(), field.name
                for key, value in a.items():
                    if isinstance(value, float):
                        assert value == pytest.approx(b[key], rel=1e-12), (field.name, key)
                    else:
                        assert value == b[key], (field.name, key)
            else:
                assert a == b, field.name


@pytest.mark.parametrize("seed", [3, 4])
def test_windows_cutting_minutes_and_hours_match_a_raw_computation(
    store_targets: StoreTargets, seed: int
) -> None:
    data = random_dataset(seed, 400, days=3)
    queries = Queries(write_store(store_targets(), data.calls, data.scores))
    rng = np.random.default_rng(seed)
    windows = [
        Window(start=T0, end=T0 + timedelta(days=3)),
        Window(start=T0 + timedelta(hours=5), end=T0 + timedelta(days=2, hours=1)),
    ]
    moments = sorted(c.started_at for c in data.calls)
    for _ in range(6):
        # Edges on a call's start (kept: the start is inclusive) or just after one (left out).
        first, second = sorted(int(v) for v in rng.integers(0, len(moments), 2))
        windows.append(
            Window(start=moments[first], end=moments[second] + timedelta(milliseconds=first % 2))
        )
    for window in windows:
        for filters in (Filters(), Filters(team="growth"), Filters(feature="", status="ok")):
            chosen = [
                c
                for c in data.calls
                if in_window(c, window.start, window.end) and passes(c, filters)
            ]
            sketch = window.end - window.start >= timedelta(minutes=2)
            assert_measures(
                queries.summary(window, filters), reference(chosen, data.scores), sketch=sketch
            )
            rows = queries.breakdown(window, filters, ["model", "feature"])
            groups = {(c.model, c.feature) for c in chosen}
            assert len(rows) == len(groups)
            for row in rows:
                members = [c for c in chosen if (c.model, c.feature) == tuple(row.group.values())]
                assert_measures(row, reference(members, data.scores), sketch=sketch)
            costs = [row.total_cost_usd for row in rows]
            assert costs == sorted(costs, reverse=True)
            both = queries.report(window, filters, ["model", "feature"])
            assert_same_rows(both.breakdown, rows)
            assert_measures(both.summary, reference(chosen, data.scores), sketch=sketch)


def test_a_user_filter_or_group_reads_the_user_rollups_and_with_other_fields_raw_calls(
    store_targets: StoreTargets,
) -> None:
    data = random_dataset(5, 300, days=2)
    queries = Queries(write_store(store_targets(), data.calls, data.scores))
    window = Window(start=T0, end=T0 + timedelta(days=2))
    chosen = [c for c in data.calls if c.user == "bob"]
    # User and model are the user rollups' keys: whole days from them, percentiles within 1%.
    assert_measures(
        queries.summary(window, Filters(user="bob")), reference(chosen, data.scores), sketch=True
    )
    rows = queries.breakdown(window, Filters(model="gpt-4o"), ["user"])
    assert {row.group["user"] for row in rows} == {"ann", "bob", "cy", "dee"}
    for row in rows:
        members = [c for c in data.calls if c.user == row.group["user"] and c.model == "gpt-4o"]
        assert_measures(row, reference(members, data.scores), sketch=True)
    # A team is kept by neither rollup: every call is read, percentiles exact.
    rows = queries.breakdown(window, Filters(team="core"), ["user"])
    assert {row.group["user"] for row in rows} == {"ann", "bob", "cy", "dee"}
    for row in rows:
        members = [c for c in data.calls if c.user == row.group["user"] and c.team == "core"]
        assert_measures(row, reference(members, data.scores), sketch=False)


def test_a_window_shorter_than_a_whole_minute_is_read_raw_and_exact(
    store_targets: StoreTargets,
) -> None:
    calls = [
        make_call(started_at=T0 + timedelta(seconds=30 + i), latency_ms=100.0 + 7 * i)
        for i in range(20)
    ]
    queries = Queries(write_store(store_targets(), calls))
    window = Window(start=T0 + timedelta(seconds=35), end=T0 + timedelta(seconds=75))
    summary = queries.summary(window)
    assert summary.calls == 15 and summary.percentiles == "exact"
    latencies = [100.0 + 7 * i for i in range(5, 20)]
    assert summary.latency_p95_ms == float(np.quantile(latencies, 0.95, method="inverted_cdf"))


def test_an_empty_filter_value_keeps_the_calls_without_one(store_targets: StoreTargets) -> None:
    calls = [
        make_call(started_at=T0 + timedelta(minutes=1), feature="search"),
        make_call(started_at=T0 + timedelta(minutes=2)),
        make_call(started_at=T0 + timedelta(minutes=3), feature="", user="ann"),
    ]
    queries = Queries(write_store(store_targets(), calls))
    assert queries.summary(DAY, Filters(feature="")).calls == 2
    assert queries.summary(DAY, Filters(feature="", user="ann")).calls == 1
    rows = queries.breakdown(DAY, Filters(), ["feature"])
    assert [(row.group["feature"], row.calls) for row in rows] == [(None, 2), ("search", 1)]


def test_report_reads_summary_and_breakdown_together_and_quality_can_be_skipped(
    store_targets: StoreTargets,
) -> None:
    data = random_dataset(6, 200, days=1)
    queries = Queries(write_store(store_targets(), data.calls, data.scores))
    # The rollups, the user rollups, and raw calls (a user and a team: neither rollup keeps both).
    for filters, by in (
        (Filters(), ["team"]),
        (Filters(user="cy"), ["model"]),
        (Filters(user="cy", team="core"), ["model"]),
    ):
        both = queries.report(DAY, filters, by)
        sketch = both.summary.percentiles == "sketch"
        assert sketch == (filters.team is None)
        assert_measures(both.summary, _fields(queries.summary(DAY, filters)), sketch=sketch)
        alone = queries.breakdown(DAY, filters, by)
        assert [row.group for row in both.breakdown] == [row.group for row in alone]
        for together, single in zip(both.breakdown, alone, strict=True):
            assert_measures(together, _fields(single), sketch=sketch)
        assert both.summary.quality
        bare = queries.report(DAY, filters, by, quality=False)
        assert bare.summary.quality == {} and all(row.quality == {} for row in bare.breakdown)
        assert bare.summary.calls == both.summary.calls
    empty = queries.report(Window(start=T0 - timedelta(days=1), end=T0), Filters(), ["team"])
    assert empty.summary.calls == 0 and empty.breakdown == []


def _fields(measures: Measures) -> dict[str, Any]:
    fields = dataclasses.asdict(measures)
    del fields["percentiles"]
    fields.pop("group", None)
    return fields


@pytest.mark.parametrize(
    "filters",
    [Filters(), Filters(model="gpt-4o"), Filters(user="ann", feature=""), Filters(status="ok")],
)
def test_quality_is_the_same_whichever_side_the_join_starts_from(
    store_targets: StoreTargets, filters: Filters
) -> None:
    data = random_dataset(8, 300, days=2)
    engine = write_store(store_targets(), data.calls, data.scores)
    window = Window(start=T0 + timedelta(hours=7, seconds=3), end=T0 + timedelta(days=1, hours=2))
    with engine.connect() as connection:
        for by in ((), ("model", "user")):
            from_calls = score_sums(connection, window, filters, by, calls_in_window=1)
            from_scores = score_sums(connection, window, filters, by, calls_in_window=10**9)
            assert from_calls.keys() == from_scores.keys()
            for key, named in from_calls.items():
                for name, (total, count) in named.items():
                    assert from_scores[key][name][1] == count
                    assert from_scores[key][name][0] == pytest.approx(total, rel=1e-12)
            with pytest.MonkeyPatch.context() as patch:
                # Every score walked, in four threads: the same sums.
                patch.setattr(quality, "PARALLEL_SCORES", 1)
                patch.setattr(quality, "_threads", lambda: 4)
                threaded = score_sums(connection, window, filters, by, calls_in_window=10**9)
            assert threaded.keys() == from_scores.keys()
            for key, named in threaded.items():
                for name, (total, count) in named.items():
                    assert from_scores[key][name][1] == count
                    assert from_scores[key][name][0] == pytest.approx(total, rel=1e-12)
    chosen = [
        c for c in data.calls if in_window(c, window.start, window.end) and passes(c, filters)
    ]
    assert Queries(engine).summary(window, filters).quality == pytest.approx(
        reference(chosen, data.scores)["quality"]
    )
