"""A fake GPU device layer (`aivitals.server.gpu.GpuDevices`): no GPU on these machines.

No test here; test modules import from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aivitals.server.gpu import GpuReading


@dataclass
class FakeGpus:
    """Devices answering ``readings`` in order; an index in ``failing`` raises like a lost card."""

    readings: list[GpuReading]
    failing: set[int] = field(default_factory=set)
    reads: int = 0

    def count(self) -> int:
        return len(self.readings)

    def read(self, index: int) -> GpuReading:
        self.reads += 1
        if index in self.failing:
            raise RuntimeError(f"GPU {index} is lost")
        return self.readings[index]


L4 = GpuReading(
    name="NVIDIA L4",
    utilisation_ratio=0.37,
    memory_used_bytes=5 * 2**30,
    memory_total_bytes=24 * 2**30,
    temperature_celsius=58.0,
)
H100 = GpuReading(
    name="NVIDIA H100 80GB HBM3",
    utilisation_ratio=0.92,
    memory_used_bytes=71 * 2**30,
    memory_total_bytes=80 * 2**30,
    temperature_celsius=67.0,
)
