"""A mergeable quantile sketch that fits in a database column.

The same logarithmic mapping as DDSketch (``ddsketch.mapping.LogarithmicMapping``, 1% relative
accuracy): a value ``v`` falls in bin ``ceil(log(v) / log(gamma))``, and a quantile is read as the
representative value of the bin that holds the value of the quantile's rank, so it is within 1%
of the exact value. The rank is `aivitals.percentile.rank`'s (the nearest rank, rounding up). Bins are stored dense from an offset, as unsigned
32-bit counts, which numpy merges fast: per-minute, per-hour and per-day rollups all carry one.

>>> sketch = Sketch.of([100.0, 200.0, 300.0])
>>> abs(sketch.quantile(0.5) - 200.0) / 200.0 <= 0.01
True
>>> Sketch.from_bytes(sketch.to_bytes()).count
3

Values are durations in milliseconds, from 0 to a day (`aivitals.store.bounds.MAX_DURATION_MS`):
`Sketch.of` refuses anything else, so every stored bin lies between `MIN_KEY` and `MAX_KEY` and
reads back as a finite number. Reads check stored sketches against that range (an older version
folded in a latency of 1.8e308 ms, whose bin reads back as infinity).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from itertools import starmap

import numpy as np
import numpy.typing as npt
from ddsketch.mapping import LogarithmicMapping

from aivitals.percentile import rank
from aivitals.store.bounds import MAX_DURATION_MS

RELATIVE_ACCURACY = 0.01
MAPPING = LogarithmicMapping(RELATIVE_ACCURACY)
# Latencies below a microsecond (and zero) are counted in one "zero" bin, read back as 0.
MIN_VALUE = 1e-3
_HEADER = struct.Struct("<iI")  # offset of the first bin, zero count
_GAMMA_LOG = float(np.log(MAPPING.gamma))


def key_of(value: float) -> int:
    """The bin of a value at or above `MIN_VALUE`."""
    return int(np.ceil(np.log(value) / _GAMMA_LOG))


MIN_KEY = key_of(MIN_VALUE)
MAX_KEY = key_of(MAX_DURATION_MS)
HEADER_BYTES = _HEADER.size


class Sketch:
    """Counts per logarithmic bin, from ``offset``; ``zeros`` counts values below `MIN_VALUE`."""

    __slots__ = ("counts", "offset", "zeros")

    def __init__(
        self, offset: int = 0, counts: npt.NDArray[np.int64] | None = None, zeros: int = 0
    ) -> None:
        self.offset = offset
        self.counts: npt.NDArray[np.int64] = counts if counts is not None else np.zeros(0, np.int64)
        self.zeros = zeros

    @classmethod
    def of(cls, values: Sequence[float] | npt.NDArray[np.float64]) -> Sketch:
        """A sketch of many values at once (vectorised: the way batches are written).

        Raises ValueError for a value that is not a number from 0 to `MAX_DURATION_MS`.
        """
        array = np.asarray(values, dtype=np.float64)
        if array.size and not (
            np.isfinite(array).all() and array.min() >= 0 and array.max() <= MAX_DURATION_MS
        ):
            raise ValueError(
                f"a sketch holds durations from 0 to {MAX_DURATION_MS:,.0f} ms; "
                f"got values from {float(array.min())!r} to {float(array.max())!r}"
            )
        small = array < MIN_VALUE
        zeros = int(small.sum())
        array = array[~small]
        if array.size == 0:
            return cls(zeros=zeros)
        keys = np.ceil(np.log(array) / _GAMMA_LOG).astype(np.int64)
        low = int(keys.min())
        counts = np.bincount(keys - low).astype(np.int64)
        return cls(low, counts, zeros)

    @property
    def count(self) -> int:
        return int(self.counts.sum()) + self.zeros

    def merge(self, other: Sketch) -> None:
        """Add ``other``'s counts into this sketch."""
        self.zeros += other.zeros
        if other.counts.size == 0:
            return
        if self.counts.size == 0:
            self.offset, self.counts = other.offset, other.counts.copy()
            return
        low = min(self.offset, other.offset)
        high = max(self.offset + self.counts.size, other.offset + other.counts.size)
        merged = np.zeros(high - low, np.int64)
        merged[self.offset - low : self.offset - low + self.counts.size] += self.counts
        merged[other.offset - low : other.offset - low + other.counts.size] += other.counts
        self.offset, self.counts = low, merged

    def quantile(self, q: float) -> float | None:
        """The value at quantile ``q`` (0..1) as `aivitals.percentile` defines it, within 1%
        relative error; ``quantile(1.0)`` is the largest value. None when empty."""
        total = self.count
        if total == 0:
            return None
        wanted = rank(q, total)
        if wanted <= self.zeros:
            return 0.0
        # The first bin whose cumulative count reaches the rank holds the value of that rank.
        cumulative = np.cumsum(self.counts) + self.zeros
        index = int(np.searchsorted(cumulative, wanted, side="left"))
        return float(MAPPING.value(self.offset + index))

    def to_bytes(self) -> bytes:
        return _HEADER.pack(self.offset, self.zeros) + self.counts.astype("<u4").tobytes()

    @classmethod
    def from_bytes(cls, data: bytes | None) -> Sketch:
        if not data:
            return cls()
        offset, zeros = _HEADER.unpack_from(data)
        counts = np.frombuffer(data, dtype="<u4", offset=_HEADER.size).astype(np.int64)
        return cls(offset, counts, zeros)


def merge_all(blobs: Iterable[bytes | None]) -> Sketch:
    """Merge many stored sketches into one."""
    merged = Sketch()
    for blob in blobs:
        if blob:
            merged.merge(Sketch.from_bytes(blob))
    return merged


def group_blobs(values: npt.NDArray[np.float64], starts: npt.NDArray[np.int64]) -> list[bytes]:
    """`Sketch.of(group's values).to_bytes()` for every group at once (NaN values skipped):
    the groups are ``values[starts[i]:starts[i + 1]]``, in range as `Sketch.of` wants them.

    >>> group_blobs(np.array([1.0, 2.0, 5.0]), np.array([0, 2])) == [
    ...     Sketch.of([1.0, 2.0]).to_bytes(), Sketch.of([5.0]).to_bytes()]
    True

    Vectorised over all groups: a day of calls is hundreds of thousands of values and a
    `Sketch.of` per group would be a Python loop over tens of thousands of groups (and a
    batch's rollup rows are hundreds of groups, a `Sketch.of` each a tenth of their fold).
    A few groups take a `Sketch.of` each: the pass's fixed cost is more than theirs.
    """
    if starts.size < _GROUPED_AT_ONCE_FROM:
        ends = [*starts[1:].tolist(), values.size][: starts.size]
        return [
            Sketch.of(part[~np.isnan(part)]).to_bytes()
            for part in (values[a:b] for a, b in zip(starts.tolist(), ends, strict=True))
        ]
    return _grouped_at_once(values, starts)


# Below this many groups a `Sketch.of` each is cheaper than the one numpy pass (its fixed cost,
# like `merge_many`'s, was most of a small batch's rollup fold).
_GROUPED_AT_ONCE_FROM = 6


def _grouped_at_once(values: npt.NDArray[np.float64], starts: npt.NDArray[np.int64]) -> list[bytes]:
    """`group_blobs` in one numpy pass."""
    groups = np.repeat(np.arange(starts.size), np.diff(np.r_[starts, values.size]))
    keep = ~np.isnan(values)
    groups, values = groups[keep], values[keep]
    small = values < MIN_VALUE
    zeros = np.bincount(groups[small], minlength=starts.size)
    groups, values = groups[~small], values[~small]
    keys = np.ceil(np.log(values) / _GAMMA_LOG).astype(np.int64)
    present = np.bincount(groups, minlength=starts.size) > 0
    low = np.full(starts.size, np.iinfo(np.int64).max)
    high = np.full(starts.size, np.iinfo(np.int64).min)
    np.minimum.at(low, groups, keys)
    np.maximum.at(high, groups, keys)
    low[~present] = 0  # a group without values: an empty sketch, offset 0 and no bins
    high[~present] = -1
    sizes = 2 + (high - low + 1)
    first = np.cumsum(sizes) - sizes
    words = np.zeros(int(sizes.sum()), np.int64)
    words[first] = low
    words[first + 1] = zeros
    np.add.at(words, first[groups] + 2 + keys - low[groups], 1)
    data = words.astype("<i4").tobytes()
    return [data[4 * a : 4 * (a + s)] for a, s in zip(first.tolist(), sizes.tolist(), strict=True)]


_EMPTY_BYTES = _HEADER.pack(0, 0)
_MOST_ZEROS = 0xFFFF_FFFF


def merge_many(stored: Sequence[bytes | None], new: Sequence[bytes | None]) -> list[bytes]:
    """``Sketch.from_bytes(stored[i])`` merged with ``Sketch.from_bytes(new[i])``, as bytes,
    for every i at once: the very bytes `Sketch.merge` and `Sketch.to_bytes` give.

    >>> a, b = Sketch.of([1.0, 2.0]).to_bytes(), Sketch.of([300.0]).to_bytes()
    >>> merged = Sketch.from_bytes(a)
    >>> merged.merge(Sketch.from_bytes(b))
    >>> merge_many([a, b''], [b, a]) == [merged.to_bytes(), a]
    True

    The writer merges a stored sketch into every rollup row a batch touches (a thousand a batch
    of 500 calls from many users): a `Sketch` per blob and a merge each were most of the fold's
    Python, so the rows' bins are placed with computed offsets in one numpy pass instead. Blobs
    that `Sketch.from_bytes` would refuse, or zero counts past what the header holds, go the
    one-row way, so they fail as they always did.
    """
    if len(stored) != len(new):
        raise ValueError(f"{len(stored)} stored sketches for {len(new)} new ones")
    if len(stored) < _MERGED_AT_ONCE_FROM:
        return list(starmap(_merge_one, zip(stored, new, strict=True)))
    return _merged_at_once(stored, new)


# Below this many pairs a merge each is cheaper than the one numpy pass, whose two dozen array
# operations cost about 150 µs whatever the size: a gateway's or a small ingest's batch touches
# a few rollup rows, and that fixed cost was a fifth of the write (docs/store.md).
_MERGED_AT_ONCE_FROM = 12


def _merged_at_once(stored: Sequence[bytes | None], new: Sequence[bytes | None]) -> list[bytes]:
    """`merge_many` in one numpy pass (``stored`` and ``new`` of the same length)."""
    if not stored:
        return []
    olds = [blob or _EMPTY_BYTES for blob in stored]
    news = [blob or _EMPTY_BYTES for blob in new]
    old_bytes = np.fromiter(map(len, olds), np.int64, len(olds))
    new_bytes = np.fromiter(map(len, news), np.int64, len(news))
    if (old_bytes % 4).any() or (new_bytes % 4).any() or min(old_bytes.min(), new_bytes.min()) < 8:
        return list(starmap(_merge_one, zip(stored, new, strict=True)))
    old_bins, old_first, old_words = _parsed(olds, old_bytes)
    new_bins, new_first, new_words = _parsed(news, new_bytes)
    old_offset = old_words.view("<i4")[old_first].astype(np.int64)
    new_offset = new_words.view("<i4")[new_first].astype(np.int64)
    zeros = old_words[old_first + 1].astype(np.int64) + new_words[new_first + 1]
    if int(zeros.max()) > _MOST_ZEROS:
        return list(starmap(_merge_one, zip(stored, new, strict=True)))
    # Sketch.merge's cases: an empty side leaves the other's offset and bins as they are.
    low = np.minimum(old_offset, new_offset)
    high = np.maximum(old_offset + old_bins, new_offset + new_bins)
    low = np.where(new_bins == 0, old_offset, np.where(old_bins == 0, new_offset, low))
    high = np.where(
        new_bins == 0, old_offset + old_bins, np.where(old_bins == 0, new_offset + new_bins, high)
    )
    words = 2 + (high - low)
    first = np.cumsum(words) - words
    merged = np.zeros(int(words.sum()), "<u4")
    merged.view("<i4")[first] = low
    merged[first + 1] = zeros
    # Counts add in 32 bits, wrapping as to_bytes' cast of the 64-bit sum wraps.
    for bins, source_first, offset, source in (
        (old_bins, old_first, old_offset, old_words),
        (new_bins, new_first, new_offset, new_words),
    ):
        within = np.arange(int(bins.sum())) - np.repeat(np.cumsum(bins) - bins, bins)
        merged[np.repeat(first + 2 + offset - low, bins) + within] += source[
            np.repeat(source_first + 2, bins) + within
        ]
    data = merged.tobytes()
    return [data[4 * a : 4 * (a + n)] for a, n in zip(first.tolist(), words.tolist(), strict=True)]


def _parsed(
    blobs: list[bytes], sizes: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.uint32]]:
    """The blobs' bin counts, the index of each one's first word, and all their words."""
    words = sizes // 4
    return words - 2, np.cumsum(words) - words, np.frombuffer(b"".join(blobs), "<u4")


def _merge_one(stored: bytes | None, new: bytes | None) -> bytes:
    sketch = Sketch.from_bytes(stored)
    sketch.merge(Sketch.from_bytes(new))
    return sketch.to_bytes()
