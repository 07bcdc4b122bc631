"""Unit vectors by partition, searched by brute force: the semantic cache's index.

Each partition (a tenant and the rest of a request, `semantic_cache`) holds its own float32 matrix,
so a search reads only the vectors that could match: a matrix-vector product in numpy. At most
``max_entries`` vectors in all; the oldest go first, and each lives ``ttl_s`` from when it was
added (a hit does not make an answer younger, so the order of insertion is also the order of
expiry, and one queue serves both).

Hand-written rather than sqlite-vec or usearch: the search must stay inside one partition (an
approximate index over everything would have to filter after the fact, and miss), partitions are
small next to the whole, numpy is already a dependency, and brute force is exact. At 100,000
vectors of 64 dimensions in one partition a search costs a few milliseconds
(benchmarks/bench_semantic.py); memory is 256 bytes a vector, and a matrix at most doubles.

>>> index = VectorIndex(dim=2, max_entries=2, ttl_s=60, clock=lambda: 0.0)
>>> index.add("p", np.array([1.0, 0.0], dtype=np.float32), "a")
>>> index.add("p", np.array([0.6, 0.8], dtype=np.float32), "b")
>>> [(m.value, round(m.similarity, 2)) for m in index.search("p", np.array([1.0, 0.0]), 0.5)]
[('a', 1.0), ('b', 0.6)]
>>> index.add("q", np.array([0.0, 1.0], dtype=np.float32), "c")  # over the bound: "a" goes
>>> len(index), [m.value for m in index.search("p", np.array([1.0, 0.0]), 0.5)]
(2, ['b'])
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np
from numpy.typing import NDArray

from aivitals.config import ConfigError

T = TypeVar("T", bound=Hashable)
_FIRST_ROWS = 4
_MAX_CANDIDATES = 8  # enough to step over a few that the caller's checks turn down


@dataclass(frozen=True, slots=True)
class Match(Generic[T]):
    value: T
    similarity: float


class _Partition(Generic[T]):
    __slots__ = ("expires", "ids", "n", "values", "vectors")

    def __init__(self, dim: int) -> None:
        self.vectors = np.empty((_FIRST_ROWS, dim), dtype=np.float32)
        self.expires = np.empty(_FIRST_ROWS, dtype=np.float64)
        self.ids: list[int] = []
        self.values: list[T] = []
        self.n = 0

    def append(self, entry: int, vector: NDArray[np.float32], value: T, expires: float) -> None:
        if self.n == len(self.vectors):
            self.vectors = np.concatenate([self.vectors, np.empty_like(self.vectors)])
            self.expires = np.concatenate([self.expires, np.empty_like(self.expires)])
        self.vectors[self.n] = vector
        self.expires[self.n] = expires
        self.ids.append(entry)
        self.values.append(value)
        self.n += 1

    def remove(self, row: int) -> int | None:
        """Drop ``row`` by moving the last row into it; the id of the moved entry, if any."""
        last = self.n - 1
        moved = None
        if row != last:
            self.vectors[row] = self.vectors[last]
            self.expires[row] = self.expires[last]
            self.ids[row] = self.ids[last]
            self.values[row] = self.values[last]
            moved = self.ids[row]
        self.ids.pop()
        self.values.pop()
        self.n = last
        return moved


class VectorIndex(Generic[T]):
    """Vectors (unit length, ``dim`` wide) with a value each, by partition. Thread-safe."""

    def __init__(
        self,
        *,
        dim: int,
        max_entries: int,
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries <= 0:
            raise ConfigError(f"cache semantic_max_entries must be above 0: {max_entries}")
        if ttl_s <= 0:
            raise ConfigError(f"cache ttl_s must be above 0: {ttl_s}")
        self.dim = dim
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._partitions: dict[str, _Partition[T]] = {}
        # Every entry, oldest first: its partition key and row, and its (partition, value).
        self._entries: OrderedDict[int, tuple[str, int]] = OrderedDict()
        self._known: dict[tuple[str, T], int] = {}

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def partitions(self) -> int:
        return len(self._partitions)

    def count(self, partition: str) -> int:
        """How many vectors ``partition`` holds (expired ones included until swept)."""
        held = self._partitions.get(partition)
        return 0 if held is None else held.n

    def add(self, partition: str, vector: NDArray[np.float32], value: T) -> None:
        """Keep ``vector`` for ``value`` in ``partition`` (replacing the same value there)."""
        now = self._clock()
        with self._lock:
            self._expire(now)
            known = self._known.get((partition, value))
            if known is not None:
                self._drop(known)
            while len(self._entries) >= self.max_entries:
                self._drop(next(iter(self._entries)))
            held = self._partitions.get(partition)
            if held is None:
                held = self._partitions[partition] = _Partition(self.dim)
            entry = next(self._ids)
            self._entries[entry] = (partition, held.n)
            self._known[(partition, value)] = entry
            held.append(entry, vector, value, now + self.ttl_s)

    def search(
        self, partition: str, vector: NDArray[np.floating], threshold: float
    ) -> list[Match[T]]:
        """The values in ``partition`` whose cosine similarity with ``vector`` is at least
        ``threshold``, best first (a few at most), expired ones left out."""
        now = self._clock()
        with self._lock:
            self._expire(now)
            held = self._partitions.get(partition)
            if held is None:
                return []
            n = held.n
            scores = held.vectors[:n] @ vector.astype(np.float32, copy=False)
            scores[held.expires[:n] <= now] = -np.inf
            rows = np.flatnonzero(scores >= threshold)
            if len(rows) > _MAX_CANDIDATES:
                rows = rows[np.argpartition(-scores[rows], _MAX_CANDIDATES)[:_MAX_CANDIDATES]]
            best = rows[np.argsort(-scores[rows], kind="stable")]
            return [Match(held.values[row], float(scores[row])) for row in best]

    def discard(self, partition: str, value: T) -> None:
        """Forget ``value`` in ``partition`` (its answer is gone from the exact cache)."""
        with self._lock:
            entry = self._known.get((partition, value))
            if entry is not None:
                self._drop(entry)

    def _expire(self, now: float) -> None:
        while self._entries:
            entry = next(iter(self._entries))
            partition, row = self._entries[entry]
            if self._partitions[partition].expires[row] > now:
                return
            self._drop(entry)

    def _drop(self, entry: int) -> None:
        partition, row = self._entries.pop(entry)
        held = self._partitions[partition]
        del self._known[(partition, held.values[row])]
        moved = held.remove(row)
        if moved is not None:
            self._entries[moved] = (partition, row)
        if held.n == 0:
            del self._partitions[partition]
