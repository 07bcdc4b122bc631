"""What a stored value must be for reads and rollups to use it: defence in depth.

The door (`aivitals.model`, with the limits of `aivitals.bounds`) refuses values outside these
ranges, so a store written by this version holds none. A store written by an older version, or
by another tool, may: a latency of 1.8e308 ms once broke every summary, and a lone surrogate in a
tag key the calls listing. Reads leave such rows out of their answers and count them
(``skipped_rows``, docs/queries.md), and the rollup writer never folds such a value in.

The ranges are the door's own figures, so a read never leaves out a call the door accepts.
Within them sums cannot overflow in practice (64-bit integers hold nine billion calls at the
token maximum); a sum that would still overflow is computed exactly anyway
(`aivitals.query.sums`).

>>> duration_ok(250.0), duration_ok(1e16), duration_ok(float("nan")), duration_ok(None)
(True, False, False, True)
"""

from __future__ import annotations

import math
from decimal import Decimal

from aivitals.bounds import MAX_DURATION_MS as _MAX_DURATION_MS
from aivitals.bounds import MAX_SCORE_MAGNITUDE as _MAX_SCORE_MAGNITUDE
from aivitals.bounds import MAX_TOKENS as _MAX_TOKENS
from aivitals.bounds import MAX_USD

MAX_DURATION_MS = float(_MAX_DURATION_MS)
"""Latency, time to first token and queue time: at most a day."""
MAX_TOKENS = _MAX_TOKENS
"""Any one token count of a call."""
MAX_COST_USD: Decimal = MAX_USD
"""Any one money field of a call."""
MAX_COST_NUSD = int(MAX_USD * 10**9)
"""`MAX_COST_USD` in nano-dollars, as sums hold it."""
MAX_SCORE_MAGNITUDE = float(_MAX_SCORE_MAGNITUDE)
"""A score's value and range bounds, in absolute value."""
MAX_TOKENS_PER_SECOND = 1e9
"""Generation speeds above this come from a generation time too short to measure (a call that
generated for 1e-300 ms would be all but infinitely fast): they are left out of speed means. The
door cannot refuse them, since each value alone is in range."""
MIN_STARTED_MS = -62_135_596_800_000
MAX_STARTED_MS = 253_402_300_799_999
"""Start times a read can turn back into a datetime: year 1 to the end of year 9999, UTC. The door
is stricter (from 2000 to a day ahead); reads only need a time they can show."""
INT64_MAX = 2**63 - 1


def duration_ok(value: float | None) -> bool:
    """A latency, TTFT or queue time in range (None: absent, which is fine)."""
    return value is None or (math.isfinite(value) and 0 <= value <= MAX_DURATION_MS)


def tokens_ok(value: int) -> bool:
    return 0 <= value <= MAX_TOKENS


def usd_ok(value: Decimal | None) -> bool:
    """A money field in range (None: unpriced, which is fine)."""
    return value is None or (
        isinstance(value, Decimal) and value.is_finite() and 0 <= value <= MAX_COST_USD
    )


def score_ok(value: float) -> bool:
    return math.isfinite(value) and abs(value) <= MAX_SCORE_MAGNITUDE
