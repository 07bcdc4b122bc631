"""A finished minute's latency sketch in a few hundred bytes, and many of them summed for a read.

The live windows (`aivitals.windows`) keep a DDSketch per key and minute for an hour. A live
``ddsketch`` sketch is a Python list of float objects padded to 128-bin chunks, plus a mapping and
two stores with a ``__dict__`` each: 10 to 20 KiB once latencies spread. A minute that has ended
takes no more values, so it is kept as `FrozenSketch`: the used bins only, as counts of the
narrowest unsigned type that holds them (most bins of a minute count under 256: a byte each) in a
bytes object.

>>> live = new_sketch()
>>> for value in (1.0, 2.0, 2.0, 300.0):
...     live.add(value)
>>> frozen = FrozenSketch.of(live)
>>> frozen.count, frozen.positive is not None and frozen.positive.counts.dtype.name
(4.0, 'uint8')
>>> combined = combine([[frozen], [live]])
>>> combined is not None and combined.count, live.get_quantile_value(1.0) == combined.get_quantile_value(1.0)
(8.0, True)

A read sums the bins of every part with numpy instead of merging sketch by sketch in Python. As
long as the parts' bins span at most the bin limit together, ddsketch's merge is exactly that sum
(nothing collapses), so the quantiles are the ones merging would give; past it, `combine` merges
the way the windows always did (per key, then across keys), collapsing the lowest bins alike.
What is kept is what a quantile and a count are read from: the bins and the zero count. The sketch's
minimum, maximum and sum are not (nothing in the windows reads them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
from ddsketch.ddsketch import BaseDDSketch
from ddsketch.mapping import LogarithmicMapping
from ddsketch.store import CollapsingLowestDenseStore

RELATIVE_ACCURACY = 0.01
BIN_LIMIT = 2048
# One mapping for every sketch: it is read-only, and each LogCollapsingLowestDenseDDSketch would
# build its own (about half a KiB).
_MAPPING = LogarithmicMapping(RELATIVE_ACCURACY)
_NARROW = (np.uint8, np.uint16, np.uint32)

Sketch: TypeAlias = "BaseDDSketch | FrozenSketch"
"""A live sketch or a frozen one."""


def new_sketch() -> BaseDDSketch:
    """What ``LogCollapsingLowestDenseDDSketch(RELATIVE_ACCURACY, bin_limit=BIN_LIMIT)`` builds,
    on the shared mapping."""
    return BaseDDSketch(
        mapping=_MAPPING,
        store=CollapsingLowestDenseStore(BIN_LIMIT),
        negative_store=CollapsingLowestDenseStore(BIN_LIMIT),
        zero_count=0.0,
    )


@dataclass(frozen=True, slots=True)
class FrozenBins:
    """A store's bins from ``min_key`` on, as counts."""

    min_key: int
    # Bytes, not the array: 33 bytes of header instead of 112, and a small minute's counts stay
    # in pymalloc's arenas instead of glibc's heap between longer-lived objects.
    data: bytes
    kind: np.dtype[Any]
    collapsed: bool

    @property
    def counts(self) -> npt.NDArray[Any]:
        return np.frombuffer(self.data, self.kind)

    @classmethod
    def of(cls, store: CollapsingLowestDenseStore) -> FrozenBins | None:
        if store.count == 0:
            return None
        start = store.min_key - store.offset
        counts = np.array(store.bins[start : store.max_key - store.offset + 1], np.float64)
        narrowed = _narrowed(counts)
        return cls(store.min_key, narrowed.tobytes(), narrowed.dtype, store.is_collapsed)

    def thawed(self) -> CollapsingLowestDenseStore:
        return _store(self.min_key, self.counts.astype(np.float64), collapsed=self.collapsed)


@dataclass(frozen=True, slots=True)
class FrozenSketch:
    """A live sketch's bins and zero count, read-only; `thawed` gives a live one back."""

    positive: FrozenBins | None
    negative: FrozenBins | None
    zero_count: float
    count: float

    @classmethod
    def of(cls, sketch: BaseDDSketch) -> FrozenSketch:
        return cls(
            FrozenBins.of(sketch._store),
            FrozenBins.of(sketch._negative_store),
            sketch._zero_count,
            sketch.count,
        )

    def thawed(self) -> BaseDDSketch:
        """A live sketch with the same bins, for a call that arrives after its minute ended."""
        return BaseDDSketch(
            mapping=_MAPPING,
            store=self.positive.thawed()
            if self.positive
            else CollapsingLowestDenseStore(BIN_LIMIT),
            negative_store=(
                self.negative.thawed() if self.negative else CollapsingLowestDenseStore(BIN_LIMIT)
            ),
            zero_count=self.zero_count,
        )


def live(sketch: Sketch) -> BaseDDSketch:
    """The sketch itself if live, else a live copy of the frozen one."""
    return sketch if isinstance(sketch, BaseDDSketch) else sketch.thawed()


def combine(groups: Sequence[Sequence[Sketch]]) -> BaseDDSketch | None:
    """All the values of every sketch in ``groups`` (one group per key, each in time order) as
    one sketch, None when there are none."""
    parts = [sketch for group in groups for sketch in group if sketch.count]
    if not parts:
        return None
    positive = _summed([_bins(part, negative=False) for part in parts])
    negative = _summed([_bins(part, negative=True) for part in parts])
    if positive is None or negative is None:
        return _merged(groups)
    return BaseDDSketch(
        mapping=_MAPPING,
        store=positive,
        negative_store=negative,
        zero_count=sum(_zero_count(part) for part in parts),
    )


def _bins(sketch: Sketch, *, negative: bool) -> FrozenBins | None:
    if isinstance(sketch, FrozenSketch):
        return sketch.negative if negative else sketch.positive
    return FrozenBins.of(sketch._negative_store if negative else sketch._store)


def _zero_count(sketch: Sketch) -> float:
    return sketch.zero_count if isinstance(sketch, FrozenSketch) else float(sketch._zero_count)


def _summed(sides: list[FrozenBins | None]) -> CollapsingLowestDenseStore | None:
    """The bins added up, or None when together they span more than the bin limit."""
    present = [side for side in sides if side is not None]
    if not present:
        return CollapsingLowestDenseStore(BIN_LIMIT)
    low = min(side.min_key for side in present)
    counts = [side.counts for side in present]
    high = max(side.min_key + len(c) - 1 for side, c in zip(present, counts, strict=True))
    if high - low + 1 > BIN_LIMIT:
        return None
    total = np.zeros(high - low + 1, np.float64)
    for side, c in zip(present, counts, strict=True):
        start = side.min_key - low
        total[start : start + len(c)] += c
    return _store(low, total, collapsed=any(side.collapsed for side in present))


def _merged(groups: Sequence[Sequence[Sketch]]) -> BaseDDSketch:
    """ddsketch's merge, per key and then across keys: what the windows did before sketches froze,
    and what collapses the lowest bins the same way when the parts span too many."""
    total = new_sketch()
    for group in groups:
        of_key = new_sketch()
        for sketch in group:
            of_key.merge(live(sketch))
        total.merge(of_key)
    return total


def _store(
    min_key: int, counts: npt.NDArray[np.float64], *, collapsed: bool
) -> CollapsingLowestDenseStore:
    # The store's documented attributes, set as its own merge would leave them.
    store = CollapsingLowestDenseStore(BIN_LIMIT)
    store.bins = counts.tolist()
    store.offset = store.min_key = min_key
    store.max_key = min_key + len(store.bins) - 1
    store.count = float(counts.sum())
    store.is_collapsed = collapsed
    return store


def _narrowed(counts: npt.NDArray[np.float64]) -> npt.NDArray[Any]:
    """The counts in the narrowest unsigned type that holds them exactly (float64 otherwise)."""
    if len(counts) and bool((counts == np.floor(counts)).all()):
        top = counts.max()
        for kind in _NARROW:
            if top <= np.iinfo(kind).max:
                return counts.astype(kind)
    return counts
