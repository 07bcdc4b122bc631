"""`aivitals.query.baseline`: reference windows, and sketches merged many at once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from aivitals.query import QueryError, Window
from aivitals.query.baseline import binned, merge_blobs, trailing
from aivitals.store.sketch import MAPPING, Sketch

NOW = datetime(2026, 11, 10, 14, 30, tzinfo=UTC)


def test_a_trailing_baseline_is_the_same_hours_of_each_day_before() -> None:
    current = Window(NOW - timedelta(hours=2), NOW)
    windows = trailing(current, 3).windows
    assert [(w.start.isoformat(), w.end.isoformat()) for w in windows] == [
        ("2026-11-07T12:30:00+00:00", "2026-11-07T14:30:00+00:00"),
        ("2026-11-08T12:30:00+00:00", "2026-11-08T14:30:00+00:00"),
        ("2026-11-09T12:30:00+00:00", "2026-11-09T14:30:00+00:00"),
    ]
    with pytest.raises(QueryError, match="longer than a day"):
        trailing(Window(NOW - timedelta(days=2), NOW))
    with pytest.raises(QueryError, match="1 to 366 days"):
        trailing(current, 0)


@pytest.mark.parametrize("seed", range(5))
def test_merging_many_blobs_at_once_equals_merging_one_by_one(seed: int) -> None:
    rng = np.random.default_rng(seed)
    sketches = [
        Sketch.of(np.concatenate([rng.lognormal(rng.uniform(0, 8), 1.0, n), np.zeros(n % 3)]))
        for n in rng.integers(0, 50, 40)
    ]
    one_by_one = Sketch()
    for sketch in sketches:
        one_by_one.merge(sketch)
    merged = merge_blobs([s.to_bytes() for s in sketches])
    assert merged.count == one_by_one.count
    assert merged.zeros == one_by_one.zeros
    for q in (0.01, 0.1, 0.5, 0.9, 0.99, 1.0):
        assert merged.quantile(q) == one_by_one.quantile(q)


def test_binned_values_land_in_the_sketch_bins_whatever_their_size() -> None:
    values = np.array([0.0, 1e-4, 3.0, 3.0, 250.0, 4.2e9])
    sketch = binned(values)
    assert sketch.count == 6 and sketch.zeros == 2
    # Each value within 1% of its bin's representative, far past a day's milliseconds too.
    assert sketch.quantile(1.0) == pytest.approx(4.2e9, rel=0.01)
    assert sketch.quantile(0.5) == pytest.approx(MAPPING.value(MAPPING.key(3.0)), rel=1e-12)
