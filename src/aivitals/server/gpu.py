"""GPU metrics per device, read through NVIDIA's management library (NVML) when it is there.

The collector reads a `GpuDevices`, a small interface over the devices: `open_nvml` gives one
over ``pynvml`` (the ``nvidia-ml-py`` package, the ``gpu`` extra) when that imports *and* NVML
initialises (a driver and a device), and None otherwise, with one info line in the log, so a
machine without a GPU exposes no GPU series at all rather than zeros that look like an idle card.
Tests swap in a fake `GpuDevices`.

>>> from prometheus_client import CollectorRegistry
>>> class OneCard:
...     def count(self) -> int:
...         return 1
...     def read(self, index: int) -> GpuReading:
...         return GpuReading(name="NVIDIA L4", utilisation_ratio=0.5, memory_used_bytes=2**30,
...                           memory_total_bytes=24 * 2**30, temperature_celsius=61.0)
>>> registry = CollectorRegistry()
>>> registry.register(GpuCollector(OneCard()))
>>> registry.get_sample_value("aivitals_gpu_utilisation_ratio", {"gpu": "0", "name": "NVIDIA L4"})
0.5
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Protocol

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from aivitals.metric_schema import (
    GPU_MEMORY_TOTAL,
    GPU_MEMORY_USED,
    GPU_TEMPERATURE,
    GPU_UTILISATION,
    MetricSpec,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class GpuReading:
    """One device, now."""

    name: str
    utilisation_ratio: float
    """Share of the last sample period in which a kernel ran, 0 to 1 (NVML's ``gpu`` percent)."""
    memory_used_bytes: float
    memory_total_bytes: float
    temperature_celsius: float


class GpuDevices(Protocol):
    """What `GpuCollector` reads: how many devices, and one device's reading by index."""

    def count(self) -> int: ...

    def read(self, index: int) -> GpuReading: ...


class NvmlDevices:
    """`GpuDevices` over an initialised ``pynvml`` module; `close` shuts NVML down."""

    def __init__(self, nvml: ModuleType) -> None:
        self._nvml = nvml

    def count(self) -> int:
        count: int = self._nvml.nvmlDeviceGetCount()
        return count

    def read(self, index: int) -> GpuReading:
        nvml = self._nvml
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        name = nvml.nvmlDeviceGetName(handle)
        memory = nvml.nvmlDeviceGetMemoryInfo(handle)
        return GpuReading(
            # Older bindings answer bytes.
            name=name.decode() if isinstance(name, bytes) else str(name),
            utilisation_ratio=nvml.nvmlDeviceGetUtilizationRates(handle).gpu / 100.0,
            memory_used_bytes=float(memory.used),
            memory_total_bytes=float(memory.total),
            temperature_celsius=float(
                nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)
            ),
        )

    def close(self) -> None:
        try:
            self._nvml.nvmlShutdown()
        except Exception as exc:
            log.info("NVML shutdown failed: %s", exc)


def open_nvml(module: str = "pynvml") -> NvmlDevices | None:
    """NVML's devices, or None (logged once, at info) when ``module`` is missing or NVML cannot
    start: no NVIDIA driver, no device, a container without the driver mounted."""
    try:
        nvml = importlib.import_module(module)
    except ImportError:
        log.info("no GPU metrics: %s is not installed (pip install 'aivitals[gpu]')", module)
        return None
    try:
        nvml.nvmlInit()
    except Exception as exc:
        # NVMLError_LibraryNotFound, _DriverNotLoaded, _NoPermission...: all mean "no GPU here".
        log.info("no GPU metrics: NVML did not initialise (%s)", exc)
        return None
    return NvmlDevices(nvml)


def _family(spec: MetricSpec) -> GaugeMetricFamily:
    return GaugeMetricFamily(spec.name, spec.help, labels=spec.labels)


class GpuCollector(Collector):
    """Utilisation, memory used and total, and temperature of each of ``devices``, per scrape.

    A device that fails to answer is left out of that scrape and logged, and the others still
    report: one bad card (fallen off the bus, ``NVML_ERROR_GPU_IS_LOST``) must not blank
    ``/metrics``.
    """

    def __init__(self, devices: GpuDevices) -> None:
        self._devices = devices

    def describe(self) -> Iterator[Metric]:
        # Described without reading devices, so registering never touches NVML.
        for spec in (GPU_UTILISATION, GPU_MEMORY_USED, GPU_MEMORY_TOTAL, GPU_TEMPERATURE):
            yield _family(spec)

    def collect(self) -> Iterator[Metric]:
        utilisation = _family(GPU_UTILISATION)
        used = _family(GPU_MEMORY_USED)
        total = _family(GPU_MEMORY_TOTAL)
        temperature = _family(GPU_TEMPERATURE)
        try:
            count = self._devices.count()
        except Exception as exc:
            log.warning("GPU metrics: cannot count devices: %s", exc)
            count = 0
        for index in range(count):
            try:
                reading = self._devices.read(index)
            except Exception as exc:
                log.warning("GPU metrics: device %d did not answer: %s", index, exc)
                continue
            labels = [str(index), reading.name]
            utilisation.add_metric(labels, reading.utilisation_ratio)
            used.add_metric(labels, reading.memory_used_bytes)
            total.add_metric(labels, reading.memory_total_bytes)
            temperature.add_metric(labels, reading.temperature_celsius)
        yield from (utilisation, used, total, temperature)
