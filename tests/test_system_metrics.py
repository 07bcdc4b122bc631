"""System metrics: event-loop lag, GPUs through a fake device layer, and none on this machine.

GPU series are read from a fake `GpuDevices` (these machines have no GPU), through the real app's
``/metrics``. The NVML adapter is read against a stand-in ``pynvml`` module of NVML's shapes.
And a real ``aivitals serve`` on this machine shows process and loop-lag series but no GPU ones.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from pathlib import Path
from types import ModuleType, SimpleNamespace

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.parser import text_string_to_metric_families

from aivitals.attribution import Attribution
from aivitals.metric_schema import EVENT_LOOP_LAG, GPU_METRICS
from aivitals.recorder import Recorder
from aivitals.runtime import Runtime
from aivitals.server import create_app
from aivitals.server.gpu import NvmlDevices, open_nvml
from aivitals.server.system_metrics import LoopLag, SystemMetrics
from aivitals.sinks.prometheus import PrometheusSink

from .support.fake_gpu import H100, L4, FakeGpus
from .support.gateway_processes import ServeProcess
from .support.realservers import poll

GPU_NAMES = {spec.name for spec in GPU_METRICS}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape_app(system: SystemMetrics) -> str:
    sink = PrometheusSink()
    runtime = Runtime(
        recorder=Recorder(inline_sinks=[sink]),
        prometheus=sink,
        windows=None,
        defaults=Attribution(),
    )
    try:
        with TestClient(create_app(runtime=runtime, store=None, system=system)) as client:
            reply = client.get("/metrics")
            assert reply.status_code == 200
            return reply.text
    finally:
        runtime.recorder.close()


def gpu(name: str, index: int, device_name: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return (name, (("gpu", str(index)), ("name", device_name)))


def test_each_fake_device_is_scraped_with_its_readings() -> None:
    got = samples(scrape_app(SystemMetrics(gpu=FakeGpus([L4, H100]))))
    for index, reading in enumerate((L4, H100)):
        assert got[gpu("aivitals_gpu_utilisation_ratio", index, reading.name)] == (
            reading.utilisation_ratio
        )
        assert got[gpu("aivitals_gpu_memory_used_bytes", index, reading.name)] == (
            reading.memory_used_bytes
        )
        assert got[gpu("aivitals_gpu_memory_total_bytes", index, reading.name)] == (
            reading.memory_total_bytes
        )
        assert got[gpu("aivitals_gpu_temperature_celsius", index, reading.name)] == (
            reading.temperature_celsius
        )


def test_a_device_that_fails_is_left_out_and_the_others_still_report(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="aivitals.server.gpu"):
        got = samples(scrape_app(SystemMetrics(gpu=FakeGpus([L4, H100], failing={0}))))
    names = {(name, labels) for name, labels in got if name in GPU_NAMES}
    assert names == {gpu(spec.name, 1, H100.name) for spec in GPU_METRICS}
    assert "device 0 did not answer: GPU 0 is lost" in caplog.text


def test_without_devices_there_is_no_gpu_series() -> None:
    text = scrape_app(SystemMetrics(gpu=None))
    assert not any(name in GPU_NAMES for name, _ in samples(text))
    assert "aivitals_gpu" not in text


def fake_nvml(*, name: object) -> ModuleType:
    """A stand-in ``pynvml``: NVML's calls with NVML's units (percent, bytes, degrees)."""
    module = ModuleType("pynvml")
    handles = {0: "handle-0"}
    module.NVML_TEMPERATURE_GPU = 0  # type: ignore[attr-defined]
    module.nvmlDeviceGetCount = lambda: 1  # type: ignore[attr-defined]
    module.nvmlDeviceGetHandleByIndex = handles.__getitem__  # type: ignore[attr-defined]
    module.nvmlDeviceGetName = lambda handle: name  # type: ignore[attr-defined]
    module.nvmlDeviceGetUtilizationRates = lambda handle: SimpleNamespace(  # type: ignore[attr-defined]
        gpu=37, memory=12
    )
    module.nvmlDeviceGetMemoryInfo = lambda handle: SimpleNamespace(  # type: ignore[attr-defined]
        used=5 * 2**30, total=24 * 2**30, free=19 * 2**30
    )
    module.nvmlDeviceGetTemperature = lambda handle, sensor: 58  # type: ignore[attr-defined]
    return module


@pytest.mark.parametrize("name", ["NVIDIA L4", b"NVIDIA L4"])
def test_the_nvml_adapter_turns_nvml_units_into_the_metrics_units(name: object) -> None:
    devices = NvmlDevices(fake_nvml(name=name))
    assert devices.count() == 1
    assert devices.read(0) == L4  # 37 % -> 0.37, bytes as bytes, degrees as degrees


def test_a_missing_nvml_module_means_no_gpu_and_one_info_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="aivitals.server.gpu"):
        assert open_nvml("aivitals_no_such_nvml_module") is None
    (record,) = caplog.records
    assert record.levelno == logging.INFO
    assert "aivitals_no_such_nvml_module is not installed" in record.getMessage()


def this_machine_has_a_gpu() -> bool:
    return shutil.which("nvidia-smi") is not None or Path("/dev/nvidia0").exists()


@pytest.mark.skipif(this_machine_has_a_gpu(), reason="this test is for machines without a GPU")
def test_on_this_machine_nvml_does_not_start_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pytest.importorskip("pynvml")
    with caplog.at_level(logging.INFO, logger="aivitals.server.gpu"):
        assert open_nvml() is None
    (record,) = caplog.records
    assert record.levelno == logging.INFO
    assert "NVML did not initialise" in record.getMessage()


def test_a_blocked_loop_shows_as_lag() -> None:
    registry = CollectorRegistry()
    histogram = Histogram(
        EVENT_LOOP_LAG.name, EVENT_LOOP_LAG.help, buckets=EVENT_LOOP_LAG.buckets, registry=registry
    )
    lag = LoopLag(histogram, interval_s=0.01)

    async def block_the_loop() -> None:
        lag.start()
        await asyncio.sleep(0.05)  # the task is asleep, waiting to wake
        time.sleep(0.6)  # blocks the loop: the call under measurement
        await asyncio.sleep(0.05)
        await lag.stop()

    asyncio.run(block_the_loop())
    count = registry.get_sample_value(EVENT_LOOP_LAG.name + "_count")
    within_half_second = registry.get_sample_value(EVENT_LOOP_LAG.name + "_bucket", {"le": "0.5"})
    assert count is not None
    assert within_half_second is not None
    # The sleep that spanned the 0.6 s block woke at least 0.59 s late: past the 0.5 s bucket.
    assert count - within_half_second >= 1


@pytest.mark.slow
def test_a_served_server_on_this_machine_has_process_and_lag_series_and_no_gpu(
    tmp_path: Path,
) -> None:
    if this_machine_has_a_gpu():
        pytest.skip("this test is for machines without a GPU")
    with ServeProcess(tmp_path) as serve:

        def lag_observed() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
            got = samples(httpx.get(serve.url + "/metrics").text)
            return got if got.get((EVENT_LOOP_LAG.name + "_count", ())) else None

        got = poll("a loop-lag sample in /metrics", lag_observed)
        for name in ("process_cpu_seconds_total", "process_resident_memory_bytes"):
            assert got[(name, ())] > 0
        assert got[("process_open_fds", ())] > 0
        assert not any(name in GPU_NAMES for name, _ in got)
        assert serve.client.get(serve.url + "/readyz").status_code == 200
