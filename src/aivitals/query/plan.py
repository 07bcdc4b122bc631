"""Which stored rows answer a window: whole rollup buckets inside it, raw calls at its ragged ends.

A window is cut into pieces, coarsest first: whole UTC days from the ``day`` rollups, whole
hours at either side from the ``hour`` rollups, whole minutes beyond those from the ``minute``
rollups, and only the partial minutes at the two ends are read from the raw ``calls`` table. So a
query reads at most about 30 + 46 + 118 buckets per key whatever the window, and its counts and
sums are exact for any window.

>>> DAY, HOUR = 86_400_000, 3_600_000
>>> cover([DAY - HOUR - 90_000, 3 * DAY + 30_000])
Plan(raw=((82710000, 82740000), (259200000, 259230000)), rolled=((60, 82740, 82800), (3600, 82800, 86400), (86400, 86400, 259200)))

Several windows side by side (the buckets of a time series) are covered each on its own, so no
rollup row straddles two of them; `boundaries_ms` lists their edges.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from aivitals.store.schema import GRANULARITIES

Range = tuple[int, int]
"""[start, end) in epoch milliseconds."""
RolledRange = tuple[int, int, int]
"""(granularity in seconds, first bucket start, end) in epoch seconds: buckets start in [start, end)."""


@dataclass(frozen=True, slots=True)
class Plan:
    """The raw ranges to scan and the rollup ranges to read for a set of adjacent windows."""

    raw: tuple[Range, ...]
    rolled: tuple[RolledRange, ...]


def cover(
    boundaries_ms: Sequence[int],
    *,
    coarsest: int = GRANULARITIES[-1],
    granularities: Sequence[int] = GRANULARITIES,
) -> Plan:
    """A plan for the windows ``[b0, b1), [b1, b2), ...``; rollups no coarser than ``coarsest``
    seconds, among ``granularities`` (finest first: the user rollups have no minutes)."""
    levels = tuple(g for g in granularities if g <= coarsest)
    raw: list[Range] = []
    rolled: list[RolledRange] = []
    for start_ms, end_ms in itertools.pairwise(boundaries_ms):
        if end_ms <= start_ms:
            continue
        if not levels:
            raw.append((start_ms, end_ms))
            continue
        finest_ms = levels[0] * 1000
        first = -(-start_ms // finest_ms) * finest_ms
        last = end_ms // finest_ms * finest_ms
        if first >= last:
            raw.append((start_ms, end_ms))
            continue
        if start_ms < first:
            raw.append((start_ms, first))
        _cover_aligned(first // 1000, last // 1000, levels, rolled)
        if last < end_ms:
            raw.append((last, end_ms))
    return Plan(raw=_merge(raw), rolled=_merge_rolled(rolled))


def _cover_aligned(start: int, end: int, levels: Sequence[int], out: list[RolledRange]) -> None:
    """Cover [start, end), both multiples of ``levels[0]`` seconds, coarsest buckets first."""
    if len(levels) == 1:
        out.append((levels[0], start, end))
        return
    coarser = levels[1]
    first = -(-start // coarser) * coarser
    last = end // coarser * coarser
    if first >= last:
        out.append((levels[0], start, end))
        return
    if start < first:
        out.append((levels[0], start, first))
    _cover_aligned(first, last, levels[1:], out)
    if last < end:
        out.append((levels[0], last, end))


def _merge(ranges: list[Range]) -> tuple[Range, ...]:
    merged: list[Range] = []
    for start, end in sorted(ranges):
        if merged and merged[-1][1] == start:
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return tuple(merged)


def _merge_rolled(ranges: list[RolledRange]) -> tuple[RolledRange, ...]:
    merged: list[RolledRange] = []
    for granularity, start, end in sorted(ranges):
        if merged and merged[-1][0] == granularity and merged[-1][2] == start:
            merged[-1] = (granularity, merged[-1][1], end)
        else:
            merged.append((granularity, start, end))
    return tuple(merged)
