"""The one percentile definition every figure uses: the nearest rank, rounding up.

The q-quantile of n values is the value of rank ``ceil(q × n)`` (counted from 1) among them
sorted: the smallest value that at least a share q of them are at or below. So "p99 = 2 s" reads
as "99% of the calls took 2 s or less", and with fewer than 100 calls p99 is the slowest call.
numpy calls it ``method="inverted_cdf"``; Prometheus' ``histogram_quantile`` picks the bucket
that holds it (the first whose cumulative count reaches q × count) and interpolates inside it.

The store's exact reads rank the values themselves; the rollup sketches, the merged sketches and
the live windows read the bin that holds the value of that rank (within 1% of it). The rule used
before, rank ``floor(q × (n − 1))`` from 0 (numpy's "lower"), hid the slow calls when there were
few: 10 calls with one of 30 s gave a p99 below their mean.

>>> rank(0.99, 10), rank(0.5, 10), rank(0.5, 1), rank(1.0, 7)
(10, 5, 1, 7)
>>> import numpy as np
>>> ranks(0.95, np.array([1, 20, 21])).tolist()
[1, 19, 20]
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt


def rank(q: float, n: int) -> int:
    """The rank (from 1) of the q-quantile among ``n`` >= 1 sorted values."""
    return min(n, max(1, math.ceil(q * n)))


def ranks(
    q: float, counts: npt.NDArray[np.int64] | npt.NDArray[np.float64]
) -> npt.NDArray[np.int64]:
    """`rank` for many counts at once (each >= 1)."""
    found = np.ceil(q * np.asarray(counts, np.float64))
    return np.clip(found, 1, counts).astype(np.int64)
