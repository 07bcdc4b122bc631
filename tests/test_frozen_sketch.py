"""A finished minute's frozen sketch reads the same as the live one, alone and summed with others.

Every expected figure comes from ``ddsketch`` itself: a LogCollapsingLowestDenseDDSketch fed the
same values (or merged from such sketches), never from `aivitals.frozen_sketch`.
"""

from __future__ import annotations

import numpy as np
from ddsketch import LogCollapsingLowestDenseDDSketch
from ddsketch.ddsketch import BaseDDSketch
from ddsketch.mapping import LogarithmicMapping
from hypothesis import given, settings
from hypothesis import strategies as st

from aivitals.frozen_sketch import BIN_LIMIT, RELATIVE_ACCURACY, FrozenSketch, combine, new_sketch

QUANTILES = (0.0, 0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0)
# Latencies from a microsecond to a day, with zeros: together they span well under 2,048 bins.
LATENCIES = st.one_of(st.just(0.0), st.floats(min_value=1e-3, max_value=86_400_000.0))


def reference(values: list[float]) -> LogCollapsingLowestDenseDDSketch:
    sketch = LogCollapsingLowestDenseDDSketch(RELATIVE_ACCURACY, bin_limit=BIN_LIMIT)
    for value in values:
        sketch.add(value)
    return sketch


def fed(values: list[float]) -> BaseDDSketch:
    sketch = new_sketch()
    for value in values:
        sketch.add(value)
    return sketch


def quantiles(sketch: BaseDDSketch | None) -> list[float | None]:
    assert sketch is not None
    return [sketch.get_quantile_value(q) for q in QUANTILES]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(LATENCIES, min_size=1, max_size=60), min_size=1, max_size=8))
def test_frozen_minutes_summed_read_as_one_sketch_fed_every_value(
    minutes: list[list[float]],
) -> None:
    frozen = [FrozenSketch.of(fed(values)) for values in minutes]
    every = [value for values in minutes for value in values]
    got = combine([frozen])
    assert got is not None
    assert got.count == len(every)
    assert quantiles(got) == quantiles(reference(every))


@settings(max_examples=40, deadline=None)
@given(st.lists(LATENCIES, min_size=1, max_size=80), st.lists(LATENCIES, min_size=1, max_size=20))
def test_a_thawed_sketch_takes_more_values_like_the_live_one(
    before: list[float], after: list[float]
) -> None:
    thawed = FrozenSketch.of(fed(before)).thawed()
    for value in after:
        thawed.add(value)
    assert thawed.count == len(before) + len(after)
    assert quantiles(thawed) == quantiles(reference(before + after))


def test_live_and_frozen_parts_mix_in_one_read() -> None:
    rng = np.random.default_rng(3)
    old, current = rng.lognormal(2.0, 1.5, 500).tolist(), rng.lognormal(4.0, 0.3, 50).tolist()
    got = combine([[FrozenSketch.of(fed(old))], [fed(current)]])
    assert quantiles(got) == quantiles(reference(old + current))


def test_negative_values_are_kept_apart_as_ddsketch_keeps_them() -> None:
    values = [-5.0, -0.5, 0.0, 0.0, 3.0, 40.0]
    got = combine([[FrozenSketch.of(fed(values[:3]))], [FrozenSketch.of(fed(values[3:]))]])
    assert got is not None and got.count == 6
    assert quantiles(got) == quantiles(reference(values))


def test_parts_spanning_more_than_the_bin_limit_collapse_as_ddsketch_merges() -> None:
    # 1e-250 and 1e6 lie some 29,000 bins apart: ddsketch's merge collapses the lowest ones.
    per_key = [[[1e-250, 5.0, 9.0], [2.0, 1e6]], [[7.0, 1e-200, 1e-250], [300.0]]]
    expected = LogCollapsingLowestDenseDDSketch(RELATIVE_ACCURACY, bin_limit=BIN_LIMIT)
    for minutes in per_key:
        of_key = LogCollapsingLowestDenseDDSketch(RELATIVE_ACCURACY, bin_limit=BIN_LIMIT)
        for values in minutes:
            of_key.merge(reference(values))
        expected.merge(of_key)

    got = combine([[FrozenSketch.of(fed(values)) for values in minutes] for minutes in per_key])

    assert got is not None and got.count == expected.count == 9
    assert quantiles(got) == quantiles(expected)


def test_counts_take_the_narrowest_type_that_holds_them() -> None:
    few = FrozenSketch.of(fed([10.0, 10.0, 12.0]))
    many = FrozenSketch.of(fed([10.0] * 300))
    assert few.positive is not None and many.positive is not None
    assert few.positive.counts.dtype == np.uint8
    assert many.positive.counts.dtype == np.uint16
    # Only the bins from the lowest value to the highest.
    mapping = LogarithmicMapping(RELATIVE_ACCURACY)
    assert len(few.positive.counts) == mapping.key(12.0) - mapping.key(10.0) + 1 < 128
    assert few.positive.counts.sum() == 3
    assert few.negative is None and few.zero_count == 0


def test_nothing_to_combine_is_none() -> None:
    assert combine([]) is None
    assert combine([[new_sketch()], [FrozenSketch.of(new_sketch())]]) is None
