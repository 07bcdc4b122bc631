"""The server's system metrics beyond the process: event-loop lag, and GPUs when NVML is there.

CPU time, memory and open files come from ``prometheus_client``'s `ProcessCollector`, which
`ServerMetrics` already registers; this module adds what that collector cannot see. Its
registry is exposed through the server's (`ServerMetrics.expose`), so one scrape carries it.

Event-loop lag is measured by a task on the server's own loop that sleeps a short interval and
records how much later than asked it woke: a handler that blocks the loop (a synchronous store
write, a CPU-bound parse) delays every other request by as much, and shows here first.

>>> import asyncio
>>> system = SystemMetrics(gpu=None, interval_s=0.01)
>>> async def a_while() -> None:
...     system.start()
...     await asyncio.sleep(0.1)
...     await system.stop()
>>> asyncio.run(a_while())
>>> system.registry.get_sample_value("aivitals_event_loop_lag_seconds_count") > 0
True
"""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry, Histogram

from aivitals.metric_schema import EVENT_LOOP_LAG
from aivitals.server.gpu import GpuCollector, GpuDevices, NvmlDevices, open_nvml
from aivitals.server.loop_task import LoopTask

LAG_INTERVAL_S = 0.25
"""Four wake-ups a second: each costs microseconds, and a stall of a quarter second or more is
seen within the scrape after it."""


class LoopLag(LoopTask):
    """A task measuring how late a sleep of ``interval_s`` wakes on the running loop."""

    name = "loop-lag"

    def __init__(self, histogram: Histogram, *, interval_s: float = LAG_INTERVAL_S) -> None:
        super().__init__()
        self._histogram = histogram
        self._interval_s = interval_s

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time() + self._interval_s
            await asyncio.sleep(self._interval_s)
            # Never negative: the loop's clock may wake a hair early on some platforms.
            self._histogram.observe(max(0.0, loop.time() - asked))


class SystemMetrics:
    """Event-loop lag and, with ``gpu`` devices, GPU metrics, in ``registry``.

    ``gpu``: the devices to read (`open_nvml` finds NVIDIA's; a test passes a fake), or None
    for no GPU series. `probe` builds one with whatever this machine has.
    """

    def __init__(
        self,
        *,
        gpu: GpuDevices | None,
        registry: CollectorRegistry | None = None,
        interval_s: float = LAG_INTERVAL_S,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.lag = LoopLag(
            Histogram(
                EVENT_LOOP_LAG.name,
                EVENT_LOOP_LAG.help,
                buckets=EVENT_LOOP_LAG.buckets,
                registry=self.registry,
            ),
            interval_s=interval_s,
        )
        self._gpu = gpu
        if gpu is not None:
            self.registry.register(GpuCollector(gpu))

    @classmethod
    def probe(cls) -> SystemMetrics:
        """With NVML's devices when NVML imports and initialises, else without GPU series."""
        return cls(gpu=open_nvml())

    def start(self) -> None:
        """Start the lag task on the running loop (the app's lifespan calls this)."""
        self.lag.start()

    async def stop(self) -> None:
        """Stop the lag task and release NVML."""
        await self.lag.stop()
        if isinstance(self._gpu, NvmlDevices):
            self._gpu.close()
