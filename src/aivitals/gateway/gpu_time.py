"""GPU time for self-hosted upstreams: each call's share of the upstream's busy time, priced by
the hour.

A server batching requests on one GPU shares it among those in flight, so a call is attributed
its share under processor sharing: a virtual clock per upstream advances ``dt / n`` while ``n``
requests are in flight, and a call's GPU time is how far that clock advanced between its start
and its end. The shares of overlapping calls add up to the time the upstream was busy; time with
nothing in flight advances nothing and is billed to no one (an idle GPU's cost is the owner's,
not any call's).

>>> now = [0.0]
>>> meter = BusyMeter(clock=lambda: now[0])
>>> a = meter.start()
>>> now[0] = 10.0; b = meter.start()        # alone for 10 s, then shared by two
>>> now[0] = 30.0; meter.end(a)
20.0
>>> now[0] = 40.0; meter.end(b)             # 10 s shared, then 10 s alone
20.0
>>> now[0] = 50.0; meter.end(meter.start())  # idle from 40 to 50: nobody's
0.0
>>> gpu_cost(20.0, Decimal("3.60"))
Decimal('0.020000000000')
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from decimal import ROUND_HALF_EVEN, Decimal

_PRECISION = Decimal("1e-12")  # a millionth of a cent: far below any GPU second's price
_SECONDS_PER_HOUR = Decimal(3600)


class BusyMeter:
    """One upstream's virtual clock. Thread-safe: the gateway's workers share it."""

    __slots__ = ("_clock", "_flying", "_last", "_lock", "_virtual")

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._virtual = 0.0
        self._flying = 0
        self._last = clock()

    def _advance(self) -> None:
        now = self._clock()
        if self._flying:
            self._virtual += (now - self._last) / self._flying
        self._last = now

    def start(self) -> float:
        """A request goes in flight; keep what this returns for its `end`."""
        with self._lock:
            self._advance()
            self._flying += 1
            return self._virtual

    def end(self, started: float) -> float:
        """The request that `start` returned ``started`` for is done: its GPU seconds."""
        with self._lock:
            self._advance()
            self._flying = max(self._flying - 1, 0)
            return self._virtual - started

    @property
    def in_flight(self) -> int:
        return self._flying


def gpu_cost(seconds: float, gpu_hour_usd: Decimal) -> Decimal:
    """What ``seconds`` of GPU time cost at ``gpu_hour_usd`` an hour, to a millionth of a cent."""
    share = Decimal(repr(max(seconds, 0.0))) * gpu_hour_usd / _SECONDS_PER_HOUR
    return share.quantize(_PRECISION, rounding=ROUND_HALF_EVEN)


def gpu_price_source(upstream: str, gpu_hour_usd: Decimal) -> str:
    """The ``price_source`` of a call priced by GPU time: ``gpu-hour: local $2.50/h`` (cents
    always shown, finer digits when the rate has them).

    >>> gpu_price_source("local", Decimal("2.5")), gpu_price_source("a100", Decimal("1.125"))
    ('gpu-hour: local $2.50/h', 'gpu-hour: a100 $1.125/h')
    """
    rate = gpu_hour_usd.normalize()
    exponent = rate.as_tuple().exponent
    if isinstance(exponent, int) and exponent > -2:
        rate = rate.quantize(Decimal("0.01"))
    return f"gpu-hour: {upstream} ${rate:f}/h"
