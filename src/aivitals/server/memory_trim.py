"""Give the C heap's free memory back to the system once a minute (glibc's ``malloc_trim``).

A long-running gateway's memory in use stays flat, but its RSS still climbed: glibc keeps the
pages that bursts of requests freed, in each thread's arena, and gives them back only when the
top of a heap is free. ``malloc_trim(0)`` walks every arena and returns the free pages inside
them too. In the soak (docs/benchmarks.md, "Gateway memory under a soak") RSS rose in steps of
0.4 to 0.7 MB while what was in use did not, and one trim at the end brought it below its level
after warm-up. Python has no binding for it, so it is called through ctypes; it runs in a worker
thread (ctypes releases the GIL for the call), never on the event loop. On a C library without
it (musl, macOS) this does nothing.

>>> import asyncio
>>> trim = MemoryTrim(interval_s=0.01)
>>> async def a_while() -> None:
...     trim.start()
...     await asyncio.sleep(0.1)
...     await trim.stop()
>>> asyncio.run(a_while())
>>> trim.trims > 0 or not trim.available
True
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
from collections.abc import Callable

from aivitals.server.loop_task import LoopTask

TRIM_INTERVAL_S = 60.0
"""Once a minute: a trim walks every arena (about a millisecond for a gateway's heap, off the
loop), and the pages a minute of bursts leaves free are what it gives back."""


def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        function = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_size_t]
    function.restype = ctypes.c_int
    trim: Callable[[int], int] = function
    return trim


class MemoryTrim(LoopTask):
    """A task on the server's loop that calls ``malloc_trim(0)`` every ``interval_s``."""

    name = "memory-trim"

    def __init__(self, *, interval_s: float = TRIM_INTERVAL_S) -> None:
        super().__init__()
        self._interval_s = interval_s
        self._trim = _malloc_trim()
        self.trims = 0
        """How many trims have run (for tests and the curious)."""

    @property
    def available(self) -> bool:
        """Whether this C library has ``malloc_trim`` (glibc does)."""
        return self._trim is not None

    def _wanted(self) -> bool:
        return self._trim is not None

    async def _run(self) -> None:
        trim = self._trim
        assert trim is not None
        while True:
            await asyncio.sleep(self._interval_s)
            await asyncio.to_thread(trim, 0)
            self.trims += 1
