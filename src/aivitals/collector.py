"""The cyclic garbage collector set up for a long-running aivitals process of our own.

CPython's collector runs a young-generation pass every 700 container allocations, and now and
then a full pass over every tracked object: the server's heap holds the price tables, the
compiled routes, the OpenTelemetry and SQLAlchemy machinery, and each full pass walks all of it
while the event loop waits. Under the closed-loop gateway benchmark (`wrk -c16`) that is where
the tail came from: p99 90 to 131 ms with the defaults, 22 to 36 ms with this, in four
interleaved runs, throughput the same (docs/benchmarks.md).

`settle` does two things once start-up is over: ``gc.freeze()`` moves everything alive so far
into the permanent generation, which no pass walks again (what start-up built lives as long as
the process does), and a young generation of `YOUNG_THRESHOLD` allocations, so the passes that
remain are rarer: most objects die by reference counting long before a pass, and cyclic garbage
still goes, a little later.

Only for processes aivitals owns (``aivitals serve``, its workers, the store's writer process):
an application's collector is the application's business, and the SDK never touches it.

In a process of its own (the collector is process-wide):

>>> import subprocess, sys
>>> code = ("import gc; from aivitals.collector import settle; settle(); "
...     "print(gc.get_threshold()[0], gc.get_freeze_count() > 0)")
>>> subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
'50000 True\\n'
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000
"""Allocations between young-generation passes (CPython's default: 700)."""


def settle() -> None:
    """Freeze what start-up built and make the young generation larger (see the module)."""
    gc.collect()  # what start-up left as garbage goes now, not into the permanent generation
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
