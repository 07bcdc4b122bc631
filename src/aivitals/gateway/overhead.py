"""What the gateway itself spends on a request: its time, less the time it waits for others.

Every gateway answer carries it in ``X-Aivitals-Overhead-Ms`` (milliseconds, 3 decimals), and
``aivitals_gateway_overhead_seconds`` (labels ``route``, ``stream``) counts it too, so users see
the gateway's cost on their own traffic. It runs from the request's arrival at the gateway's
route to the head of its answer, less the time spent waiting for the upstream (its status line,
and a whole answer's body). A stream's header can only say what was spent up to its head (a
header cannot follow the body); its histogram sample adds the handling of each chunk and the
recording at its end, never the waits for the upstream's next chunk or for the client to take one.

>>> watch = Overhead(t0=10.0)
>>> watch.waited += 0.25  # the upstream answered in 250 ms
>>> round(watch.spent_s(now=10.2515), 6)
0.0015
>>> header_value(0.0015)
'1.500'
"""

from __future__ import annotations

import time

OVERHEAD_HEADER = "x-aivitals-overhead-ms"


class Overhead:
    """A request's clock: ``t0`` (`time.perf_counter`), the seconds spent waiting (``waited``,
    which the proxy adds to around each wait), and a stream's handling after its head (``busy``).
    """

    __slots__ = ("at_head", "busy", "t0", "waited")

    def __init__(self, t0: float) -> None:
        self.t0 = t0
        self.waited = 0.0
        self.busy = 0.0
        self.at_head = 0.0  # the overhead when the answer's head left

    def spent_s(self, now: float | None = None) -> float:
        """The overhead so far: elapsed less waited (never below 0)."""
        elapsed = (time.perf_counter() if now is None else now) - self.t0
        return max(0.0, elapsed - self.waited)

    def streamed_s(self) -> float:
        """A stream's whole overhead: up to its head, then its chunks' handling."""
        return self.at_head + self.busy


def header_value(seconds: float) -> str:
    return f"{seconds * 1000.0:.3f}"
