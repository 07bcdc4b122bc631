"""A real OpenTelemetry SDK as the application's global provider, for one test at a time.

The API lets a process set its global providers once; opentelemetry-python's own tests reset
them the same way (``opentelemetry.test.globals_test``, not installed here), so each test here
gets a fresh provider and leaves the default proxy behind for the tests after it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import metrics as otel_metrics
from opentelemetry import trace as otel
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Sampler
from opentelemetry.util._once import Once


def reset_tracing() -> None:
    """The API's global tracer provider back to unset (the default proxy)."""
    otel._TRACER_PROVIDER_SET_ONCE = Once()
    otel._TRACER_PROVIDER = None
    otel._PROXY_TRACER_PROVIDER = otel.ProxyTracerProvider()


def _reset_metrics() -> None:
    otel_metrics._internal._METER_PROVIDER_SET_ONCE = Once()
    otel_metrics._internal._METER_PROVIDER = None
    otel_metrics._internal._PROXY_METER_PROVIDER = otel_metrics._internal._ProxyMeterProvider()


@contextmanager
def global_tracing(sampler: Sampler | None = None) -> Iterator[InMemorySpanExporter]:
    """A global `TracerProvider` whose finished spans land in the exporter yielded."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    reset_tracing()
    otel.set_tracer_provider(provider)
    try:
        yield exporter
    finally:
        provider.shutdown()
        reset_tracing()


@contextmanager
def global_metrics() -> Iterator[InMemoryMetricReader]:
    """A global `MeterProvider` read by the in-memory reader yielded."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    _reset_metrics()
    otel_metrics.set_meter_provider(provider)
    try:
        yield reader
    finally:
        provider.shutdown()
        _reset_metrics()
