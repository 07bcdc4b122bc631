from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aivitals.query import distribution
from aivitals.query.distribution import SketchMerger, exact_quantiles
from aivitals.query.plan import Plan, cover
from aivitals.store.sketch import MIN_VALUE, Sketch

DAY_MS = 86_400_000
moments = st.integers(min_value=1_790_000_000_000, max_value=1_790_000_000_000 + 40 * DAY_MS)


def pieces(plan: Plan) -> list[tuple[int, int, int]]:
    """Every piece as (start_ms, end_ms, granularity; 0 for raw), in time order."""
    found = [(start, end, 0) for start, end in plan.raw]
    found += [(start * 1000, end * 1000, g) for g, start, end in plan.rolled]
    return sorted(found)


@given(st.lists(moments, min_size=2, max_size=6, unique=True))
def test_a_plan_covers_each_window_exactly_with_aligned_buckets(edges: list[int]) -> None:
    edges.sort()
    plan = cover(edges)
    found = pieces(plan)
    # The pieces tile [first edge, last edge) without gap or overlap.
    assert found[0][0] == edges[0] and found[-1][1] == edges[-1]
    for (_, end, _), (start, _, _) in itertools.pairwise(found):
        assert end == start
    for start, end, granularity in found:
        assert start < end
        if granularity:
            assert start % (granularity * 1000) == 0 and end % (granularity * 1000) == 0
            # No rollup bucket straddles an edge between two windows.
            assert not any(
                start < edge < end and (edge - start) % (granularity * 1000) for edge in edges
            )
        else:
            # Raw calls are read only for what whole minutes cannot cover.
            assert end - start < 60_000 * len(edges)
    # At most two partial hours of minutes and two partial days of hours per window.
    for granularity, limit in ((60, 2 * 59 * 60_000), (3600, 2 * 23 * 3_600_000)):
        per_window = sum(e - s for s, e, g in found if g == granularity)
        assert per_window <= limit * (len(edges) - 1)


@given(moments, moments)
def test_a_single_window_uses_the_coarsest_buckets_that_fit(a: int, b: int) -> None:
    start, end = min(a, b), max(a, b)
    plan = cover([start, end])
    whole_days = -(-start // DAY_MS) * DAY_MS, end // DAY_MS * DAY_MS
    if whole_days[0] < whole_days[1]:
        assert (86400, whole_days[0] // 1000, whole_days[1] // 1000) in plan.rolled
    assert all(g <= 3600 for g, _, _ in cover([start, end], coarsest=3600).rolled)
    assert cover([start, end], coarsest=0) == Plan(
        raw=((start, end),) if start < end else (), rolled=()
    )


@given(
    st.lists(
        st.tuples(
            st.integers(0, 3),
            st.lists(st.floats(0.0, 1e6, allow_nan=False), max_size=30),
        ),
        max_size=12,
    ),
    st.lists(st.tuples(st.integers(0, 3), st.floats(0.0, 1e6)), max_size=30),
)
def test_merged_sketches_read_exactly_as_one_sketch_of_everything(
    stored: list[tuple[int, list[float]]], raw: list[tuple[int, float]]
) -> None:
    merger = SketchMerger(4)
    merger.add_blobs(
        np.array([g for g, _ in stored], np.int64), [Sketch.of(v).to_bytes() for _, v in stored]
    )
    merger.add_values(np.array([g for g, _ in raw], np.int64), np.array([v for _, v in raw]))
    qs = (0.0, 0.5, 0.95, 0.99, 1.0)
    got = merger.quantiles(qs)
    for group in range(4):
        values = [v for g, vs in stored if g == group for v in vs]
        values += [v for g, v in raw if g == group]
        whole = Sketch.of(values)
        assert got[group].tolist() == [
            np.nan if whole.count == 0 else whole.quantile(q) for q in qs
        ] or (whole.count == 0 and np.isnan(got[group]).all())
        if values:
            exact = [float(np.quantile(values, q, method="inverted_cdf")) for q in qs]
            for value, want in zip(got[group], exact, strict=True):
                # Values under MIN_VALUE (a microsecond) are kept as zeros.
                assert abs(value - want) <= 0.01 * want + MIN_VALUE


def test_merging_works_a_slice_of_groups_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(2)
    groups = rng.integers(0, 50, 400)
    blobs = [Sketch.of(rng.lognormal(5, 2, 20)).to_bytes() for _ in groups]
    whole = SketchMerger(50)
    whole.add_blobs(groups, blobs)
    expected = whole.quantiles((0.5, 0.99))
    monkeypatch.setattr(distribution, "_MAX_CELLS", 1000)
    sliced = SketchMerger(50)
    sliced.add_blobs(groups, blobs)
    assert np.array_equal(sliced.quantiles((0.5, 0.99)), expected, equal_nan=True)


def test_exact_quantiles_match_numpy_nearest_rank_per_group() -> None:
    rng = np.random.default_rng(3)
    groups = rng.integers(0, 5, 1000)
    values = rng.lognormal(5, 1, 1000)
    values[::7] = np.nan
    got = exact_quantiles(groups, values, 6, (0.5, 0.95, 0.99))
    for group in range(5):
        kept = values[(groups == group) & ~np.isnan(values)]
        assert got[group].tolist() == [
            float(np.quantile(kept, q, method="inverted_cdf")) for q in (0.5, 0.95, 0.99)
        ]
    assert np.isnan(got[5]).all()
