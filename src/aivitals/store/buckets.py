"""A batch's calls grouped into the time buckets of every granularity a rollup keeps.

A batch spans seconds, so its hour bucket of a key usually holds exactly the calls of one minute
bucket, and its day bucket those of one hour bucket. Such a coarser bucket is the same calls as
its one finer bucket, in the same order: its sums and sketches are that row's, bit for bit, so
the rollups copy the finer row instead of summing and sketching the calls again (`grouped`,
`with_copies`).
Only the calls of the finest buckets are grouped one by one; the coarser buckets are built from
the finer buckets' keys, which are far fewer than the calls.

>>> members, same = grouped([("ana",), ("bo",), ("ana",)], [10, 20, 100], (60, 3600))
>>> members
{(60, 0, 'ana'): [0], (60, 0, 'bo'): [1], (60, 60, 'ana'): [2], (3600, 0, 'ana'): [0, 2]}
>>> same
{(3600, 0, 'bo'): (60, 0, 'bo')}
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain
from typing import Any

Key = tuple[Any, ...]
"""(granularity, bucket_start, *dimensions)"""


def grouped(
    dimensions: Sequence[tuple[Any, ...] | None],
    seconds: Sequence[int],
    granularities: Sequence[int],
) -> tuple[dict[Key, list[int]], dict[Key, Key]]:
    """The buckets of the calls whose ``dimensions`` are not None (started at ``seconds``, whole
    epoch seconds), at each of ``granularities`` (finest first, each a multiple of the one before).

    Returns ``members``, each bucket whose row is built from its calls, with their positions in
    call order; and ``same``, each coarser bucket made of the calls of exactly one finer bucket,
    with that bucket's key (in ``members`` or earlier in ``same``): its row is that row, at its
    own granularity and start. Both are in the order rows were built before: finest first.
    """
    finest = granularities[0]
    members: dict[Key, list[int]] = {}
    for index, (values, second) in enumerate(zip(dimensions, seconds, strict=True)):
        if values is None:
            continue
        key = (finest, second - second % finest, *values)
        found = members.get(key)
        if found is None:
            members[key] = [index]
        else:
            found.append(index)
    same: dict[Key, Key] = {}
    finer = list(members)
    previous = finest
    for granularity in granularities[1:]:
        if granularity % previous:
            raise ValueError(f"granularity {granularity} is not a multiple of {previous}")
        parts: dict[Key, list[Key]] = {}
        for key in finer:
            coarse = (granularity, key[1] - key[1] % granularity, *key[2:])
            found_parts = parts.get(coarse)
            if found_parts is None:
                parts[coarse] = [key]
            else:
                found_parts.append(key)
        for coarse, keys in parts.items():
            if len(keys) == 1:
                same[coarse] = keys[0]
            else:
                # Each part's positions are in call order; sorting their concatenation restores
                # the order across them (floats are summed in call order, to the bit).
                members[coarse] = sorted(
                    chain.from_iterable(_of(key, members, same) for key in keys)
                )
        finer = list(parts)
        previous = granularity
    return members, same


def _of(key: Key, members: dict[Key, list[int]], same: dict[Key, Key]) -> list[int]:
    """The positions of the calls in bucket ``key``, following ``same`` to the bucket built."""
    while key not in members:
        key = same[key]
    return members[key]


def with_copies(
    members: dict[Key, list[int]], rows: list[dict[str, Any]], same: dict[Key, Key]
) -> list[dict[str, Any]]:
    """``rows`` (one per bucket of ``members``, in its order, sketches included) and, after them,
    each bucket of ``same`` as a copy of the row it is made of, at its own granularity and start."""
    built = dict(zip(members, rows, strict=True))
    for key, part in same.items():
        copy = dict(built[part])
        copy["granularity"], copy["bucket_start"] = key[0], key[1]
        built[key] = copy
    return list(built.values())
