"""When the demo's calls are dated: spread over a past window with a day's rhythm.

The demo sends its calls within a minute or two, but a dashboard over the last 24 hours (its
default range) would then show one spike at the right edge. So the demo dates each call into the
window it is asked for, busiest early on and quieter later, the way a day of traffic looks; the
call itself (latency, tokens, cost, outcome) is what was measured.

>>> from datetime import UTC, datetime, timedelta
>>> end = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
>>> times = spread(4, end=end, span=timedelta(hours=24))
>>> times[-1] == end and all(end - timedelta(hours=24) < t <= end for t in times)
True
>>> times == sorted(times)
True
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

# Where in the window traffic peaks, as a share of it, and how strongly (below 1, so the
# rhythm never runs time backwards).
_PEAK = 0.25
_DEPTH = 0.6


def spread(count: int, *, end: datetime, span: timedelta) -> list[datetime]:
    """``count`` start times in order, in the ``span`` before ``end``, the last one at ``end``.

    The first comes a ``count``-th of the span after its start rather than at it, so a
    ``--since`` of the same span, read a little later, still holds every call.
    """
    phase = 2 * math.pi * _PEAK
    times: list[datetime] = []
    for index in range(count):
        share = (index + 1) / count
        # The shift is 0 at both ends of the window and its slope stays below 1: the times
        # stay in order and inside the window, densest around the peak.
        share -= _DEPTH * (math.sin(2 * math.pi * share - phase) + math.sin(phase)) / (2 * math.pi)
        times.append(end - span * (1 - share))
    return times
