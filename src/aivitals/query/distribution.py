"""Percentiles per group, exact from raw values or within 1% from merged rollup sketches.

Both read a quantile the same way, `aivitals.percentile`'s nearest rank (numpy's
``method="inverted_cdf"``): the value at rank ``ceil(q * n)``, from 1, of the sorted values, so
``q = 1.0`` is the largest. `exact_quantiles` sorts the values themselves; `SketchMerger` adds
stored sketches (and raw values, binned the same way) into one histogram per group and reads the
representative value of the bin that holds that rank, which is within 1% of the exact value
(`aivitals.store.sketch`).

>>> import numpy as np
>>> groups, values = np.array([0, 0, 0, 1]), np.array([3.0, 1.0, 2.0, 5.0])
>>> exact_quantiles(groups, values, 2, (0.5, 0.99, 1.0)).tolist()
[[2.0, 3.0, 3.0], [5.0, 5.0, 5.0]]
>>> merger = SketchMerger(2)
>>> merger.add_values(groups, values)
>>> merger.quantiles((0.5,))[:, 0].round(1).tolist()
[2.0, 5.0]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from aivitals.percentile import ranks
from aivitals.store.sketch import HEADER_BYTES, MAPPING, MAX_KEY, MIN_KEY, MIN_VALUE

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

# The same bin arithmetic as `Sketch.of`, so raw values land in the bins stored sketches use.
_GAMMA_LOG = float(np.log(MAPPING.gamma))
# Histograms larger than this many cells are built a slice of groups at a time.
_MAX_CELLS = 4_000_000


def exact_quantiles(
    groups: IntArray, values: FloatArray, n_groups: int, qs: Sequence[float]
) -> FloatArray:
    """Exact nearest-rank quantiles of ``values`` per group id; NaN values are skipped.

    Returns an ``(n_groups, len(qs))`` array with NaN where a group has no value.
    """
    out = np.full((n_groups, len(qs)), np.nan)
    keep = ~np.isnan(values)
    groups, values = groups[keep], values[keep]
    if values.size == 0:
        return out
    order = np.lexsort((values, groups))
    ordered = values[order]
    counts = np.bincount(groups, minlength=n_groups)
    starts = np.cumsum(counts) - counts
    present = counts > 0
    for column, q in enumerate(qs):
        out[present, column] = ordered[starts[present] + ranks(q, counts[present]) - 1]
    return out


def usable_sketches(blobs: Sequence[bytes | None]) -> BoolArray:
    """Which stored sketches a merge can use: well formed (a header, then whole 32-bit counts),
    with every bin between `MIN_KEY` and `MAX_KEY` (durations of at most a day).

    An older writer folded in any latency, and the bin of 1.8e308 ms reads back as infinity.

    >>> from aivitals.store.sketch import Sketch
    >>> usable_sketches([Sketch.of([5.0]).to_bytes(), b"x", None]).tolist()
    [True, False, True]
    """
    try:
        sizes = np.fromiter(map(len, blobs), np.int64, len(blobs))  # type: ignore[arg-type]  # None is handled below
    except TypeError:  # a NULL sketch among them, which reads as empty
        sizes = np.fromiter((len(blob) if blob else 0 for blob in blobs), np.int64, len(blobs))
    usable: BoolArray = sizes == 0
    shaped = (sizes >= HEADER_BYTES) & (sizes % 4 == 0)
    if not shaped.any():
        return usable
    chosen = np.flatnonzero(shaped)
    if chosen.size == len(blobs):
        joined = b"".join(blobs)  # type: ignore[arg-type]  # every blob is shaped bytes here
    else:
        joined = b"".join(blobs[i] or b"" for i in chosen.tolist())
    lengths = sizes[chosen] // 4
    starts = np.cumsum(lengths) - lengths
    offsets = np.frombuffer(joined, "<i4")[starts].astype(np.int64)
    bins = lengths - 2
    usable[chosen] = (bins == 0) | ((offsets >= MIN_KEY) & (offsets + bins - 1 <= MAX_KEY))
    return usable


class SketchMerger:
    """Adds stored sketches and raw values into one logarithmic histogram per group."""

    def __init__(self, n_groups: int) -> None:
        self.n_groups = n_groups
        self._blob_groups: list[IntArray] = []
        self._blobs: list[bytes] = []
        self._value_groups: list[IntArray] = []
        self._values: list[FloatArray] = []

    def add_blobs(self, groups: IntArray, blobs: Sequence[bytes | None]) -> None:
        """Stored sketches (`Sketch.to_bytes`), one per group id in ``groups``."""
        kept = [i for i, blob in enumerate(blobs) if blob]
        self._blob_groups.append(groups[kept])
        self._blobs.extend(blobs[i] for i in kept)  # type: ignore[misc]  # falsy blobs dropped above

    def add_values(self, groups: IntArray, values: FloatArray) -> None:
        """Raw values, one per group id in ``groups``; NaN values are skipped."""
        keep = ~np.isnan(values)
        self._value_groups.append(groups[keep])
        self._values.append(values[keep])

    def quantiles(self, qs: Sequence[float]) -> FloatArray:
        """An ``(n_groups, len(qs))`` array of quantiles within 1%; NaN where a group is empty."""
        out = np.full((self.n_groups, len(qs)), np.nan)
        sketches = _Decoded(
            np.concatenate(self._blob_groups) if self._blob_groups else _ints(), self._blobs
        )
        value_groups = np.concatenate(self._value_groups) if self._value_groups else _ints()
        values = np.concatenate(self._values) if self._values else np.zeros(0)
        small = values < MIN_VALUE
        keys = np.zeros(values.size, np.int64)
        keys[~small] = np.ceil(np.log(values[~small]) / _GAMMA_LOG).astype(np.int64)
        low, high = sketches.key_range()
        if (~small).any():
            low = min(low, int(keys[~small].min()))
            high = max(high, int(keys[~small].max()))
        if low > high:
            low = high = 0
        width = max(high - low + 1, 1)
        zeros = np.bincount(
            sketches.groups, weights=sketches.zeros, minlength=self.n_groups
        ).astype(np.float64)
        zeros += np.bincount(value_groups[small], minlength=self.n_groups)
        step = max(1, _MAX_CELLS // width)
        for first in range(0, self.n_groups, step):
            last = min(first + step, self.n_groups)
            hist = sketches.histogram(first, last, low, width)
            inside = (value_groups >= first) & (value_groups < last) & ~small
            cells = (value_groups[inside] - first) * width + keys[inside] - low
            hist += np.bincount(cells, minlength=hist.size).reshape(hist.shape)
            _read(hist, zeros[first:last], low, qs, out[first:last])
        return out


def _read(
    hist: FloatArray, zeros: FloatArray, low: int, qs: Sequence[float], out: FloatArray
) -> None:
    """Fill ``out`` (groups × qs) from per-group bin counts, as `Sketch.quantile` reads them."""
    cumulative = np.cumsum(hist, axis=1) + zeros[:, None]
    totals = cumulative[:, -1]
    present = totals > 0
    representative = np.array([MAPPING.value(low + i) for i in range(hist.shape[1])])
    for column, q in enumerate(qs):
        wanted = ranks(q, np.maximum(totals, 1))
        # The first bin whose cumulative count reaches the rank holds the value of that rank.
        values = representative[np.argmax(cumulative >= wanted[:, None], axis=1)]
        values[wanted <= zeros] = 0.0
        out[present, column] = values[present]


class _Decoded:
    """Many stored sketches decoded at once: their headers, and their bins as one word array."""

    def __init__(self, groups: IntArray, blobs: list[bytes]) -> None:
        order = np.argsort(groups, kind="stable")
        self.groups = groups[order]
        blobs = [blobs[i] for i in order]
        sizes = np.fromiter((len(b) for b in blobs), np.int64, len(blobs)) // 4
        # Each blob is a little-endian (int32 offset, uint32 zeros) header then uint32 counts.
        self.words = np.frombuffer(b"".join(blobs), "<u4")
        self.starts = np.cumsum(sizes) - sizes
        self.sizes = sizes
        self.offsets = self.words[self.starts].view(np.int32).astype(np.int64)
        self.zeros = self.words[self.starts + 1].astype(np.float64)
        self.bins = sizes - 2

    def key_range(self) -> tuple[int, int]:
        has = self.bins > 0
        if not has.any():
            return (2**62, -(2**62))
        return int(self.offsets[has].min()), int((self.offsets[has] + self.bins[has] - 1).max())

    def histogram(self, first: int, last: int, low: int, width: int) -> FloatArray:
        """Bin counts for group ids in [first, last), as a (groups, width) array from key ``low``."""
        hist = np.zeros((last - first) * width)
        lo, hi = np.searchsorted(self.groups, (first, last))
        if lo == hi:
            return hist.reshape(last - first, width)
        base = int(self.starts[lo])
        end = int(self.starts[hi - 1] + self.sizes[hi - 1])
        words = self.words[base:end].astype(np.float64)
        starts = self.starts[lo:hi] - base
        # Word j of blob b goes to cell (group - first) * width + offset - low + (j - start - 2).
        shift = (self.groups[lo:hi] - first) * width + self.offsets[lo:hi] - low - starts - 2
        cells = np.arange(words.size) + np.repeat(shift, self.sizes[lo:hi])
        words[starts] = 0.0
        words[starts + 1] = 0.0
        cells[starts] = 0
        cells[starts + 1] = 0
        hist += np.bincount(cells, weights=words, minlength=hist.size)
        return hist.reshape(last - first, width)


def _ints() -> IntArray:
    return np.zeros(0, np.int64)
