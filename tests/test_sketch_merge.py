"""`merge_many`, the writer's merge of many stored sketches at once, gives `Sketch.merge`'s bytes.

The rollups' stored format must not move by a bit: readers of older stores, and the one-row
merge, read the same blobs. Every case is checked against `Sketch.merge` one pair at a time and,
where the sketches come from values, against `Sketch.of` over all the values, which does not
merge at all.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aivitals.store.sketch import MAX_KEY, MIN_KEY, Sketch, _merged_at_once, merge_many

Merge = Callable[[Sequence[bytes | None], Sequence[bytes | None]], list[bytes]]


def one_by_one(stored: Sequence[bytes | None], new: Sequence[bytes | None]) -> list[bytes]:
    merged = []
    for old, added in zip(stored, new, strict=True):
        sketch = Sketch.from_bytes(old)
        sketch.merge(Sketch.from_bytes(added))
        merged.append(sketch.to_bytes())
    return merged


def blob(offset: int, counts: list[int], zeros: int = 0) -> bytes:
    """A stored sketch written out by hand: the header, then 32-bit counts."""
    return struct.pack("<iI", offset, zeros) + struct.pack(f"<{len(counts)}I", *counts)


def test_sketches_of_values_merge_into_the_sketch_of_all_of_them() -> None:
    rng = random.Random(3)
    stored, new, every = [], [], []
    for _ in range(300):
        a = [rng.lognormvariate(6, 1.5) for _ in range(rng.randint(0, 20))]
        b = [rng.lognormvariate(2, 2) for _ in range(rng.randint(0, 5))]
        a += [0.0] * rng.randint(0, 2)  # the zero bin
        stored.append(Sketch.of(a).to_bytes())
        new.append(Sketch.of(b).to_bytes())
        every.append(a + b)
    merged = merge_many(stored, new)
    for values, got in zip(every, merged, strict=True):
        whole = Sketch.of(values)
        back = Sketch.from_bytes(got)
        assert back.zeros == whole.zeros
        # Sketch.of starts at the lowest bin; a merge keeps the span of both sides.
        assert back.count == len(values)
        if whole.counts.size:
            start = whole.offset - back.offset
            assert np.array_equal(back.counts[start : start + whole.counts.size], whole.counts)
            assert back.counts.sum() == whole.counts.sum()
    assert merged == one_by_one(stored, new)


def test_every_shape_of_pair_gives_the_one_row_merges_bytes() -> None:
    stored: list[bytes | None] = [
        blob(5, [1, 2, 3]),  # overlapping
        blob(5, [1, 2, 3]),  # new below
        blob(-349, [7]),  # one bin each, far apart, negative offset
        blob(10, [], zeros=4),  # stored with no bins
        blob(10, [1, 0, 0, 2]),  # new with no bins: stored kept as is, zeros added
        blob(3, [], zeros=1),  # neither has bins: stored offset kept
        None,  # no stored sketch at all
        b"",
        blob(0, [0, 0, 5, 0]),  # zero counts at both ends stay
        blob(MIN_KEY, [1]),
        blob(2, [0xFFFF_FFFF, 0xFFFF_FFF0]),  # 32-bit counts near their limit wrap as to_bytes
    ]
    new: list[bytes | None] = [
        blob(6, [10, 20, 30, 40]),
        blob(1, [9]),
        blob(MAX_KEY, [1]),
        blob(-2, [1, 1], zeros=2),
        blob(99, [], zeros=3),
        blob(-7, [], zeros=2),
        blob(4, [2, 2]),
        blob(0, [], zeros=1),
        blob(1, [1, 0, 0, 0, 0, 9]),
        None,
        blob(2, [3, 0x20]),
    ]
    merged = merge_many(stored, new)
    assert merged == one_by_one(stored, new)
    assert _merged_at_once(stored, new) == merged  # these few pairs, in the one numpy pass too
    # Two written out by hand, not by the code under test.
    assert merged[0] == blob(5, [1, 12, 23, 30, 40])
    assert merged[5] == blob(3, [], zeros=3)
    assert merged[10] == blob(2, [2, 0x10])


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(MIN_KEY, MAX_KEY),
            st.lists(st.integers(0, 2**32 - 1), max_size=12),
            st.integers(0, 2**31 - 1),
            st.integers(MIN_KEY, MAX_KEY),
            st.lists(st.integers(0, 2**32 - 1), max_size=12),
            st.integers(0, 2**31 - 1),
        ),
        max_size=30,
    )
)
def test_random_pairs_merge_as_one_by_one(
    pairs: list[tuple[int, list[int], int, int, list[int], int]],
) -> None:
    stored = [blob(a, counts, zeros) for a, counts, zeros, *_ in pairs]
    new = [blob(b, counts, zeros) for *_, b, counts, zeros in pairs]
    expected = one_by_one(stored, new)
    assert merge_many(stored, new) == expected
    # Whatever the size merge_many would take the numpy pass from, it gives the same bytes.
    assert _merged_at_once(stored, new) == expected


@pytest.mark.parametrize("merge", [merge_many, _merged_at_once])
def test_what_the_one_row_merge_refuses_is_refused_the_same_way(merge: Merge) -> None:
    good = blob(1, [1])
    with pytest.raises(struct.error):
        merge([good, b"\x01\x02\x03\x04"], [good, good])  # shorter than a header
    with pytest.raises(ValueError, match="multiple of element size"):
        merge([good, blob(1, [1]) + b"\x00"], [good, good])  # a count cut short
    with pytest.raises(struct.error):
        merge([good, blob(1, [1], zeros=2**32 - 1)], [good, blob(1, [1], zeros=1)])
    assert merge([], []) == []
    with pytest.raises(ValueError, match="stored sketches"):
        merge_many([good], [])
