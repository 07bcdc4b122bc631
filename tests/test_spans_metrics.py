"""GenAI client metrics through the application's `MeterProvider`, read by the SDK's own
in-memory reader."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader

import aivitals
from aivitals.sdk.runtime import reset
from aivitals.sinks.memory import MemorySink
from aivitals.sinks.otel_metrics import OtelMetricsSink

from .support.otel import global_metrics

# The semantic conventions' advice, written out (not taken from the code under test).
TOKEN_BOUNDARIES = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304)
TOKEN_BOUNDARIES_TAIL = (16777216, 67108864)
SECOND_BOUNDARIES = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48)
SECOND_BOUNDARIES_TAIL = (40.96, 81.92)


@pytest.fixture
def reader() -> Iterator[InMemoryMetricReader]:
    with global_metrics() as metrics:
        aivitals.configure(sinks=[MemorySink()], flush_interval_s=0.05, prometheus=False)
        yield metrics
        reset()


def points(reader: InMemoryMetricReader, name: str) -> list[HistogramDataPoint]:
    aivitals.flush()
    data = reader.get_metrics_data()
    assert data is not None
    found: list[HistogramDataPoint] = []
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    found.extend(p for p in metric.data.data_points)  # type: ignore[misc]
    return found


def by(points_: list[HistogramDataPoint], **attributes: Any) -> HistogramDataPoint:
    [point] = [
        p for p in points_ if all((p.attributes or {}).get(k) == v for k, v in attributes.items())
    ]
    return point


def test_tokens_duration_and_first_chunk_are_genai_histograms(
    reader: InMemoryMetricReader,
) -> None:
    with aivitals.track(model="gpt-4o", provider="openai") as call:
        call.set_usage(input_tokens=1200, output_tokens=300)
        call.mark_first_token()
    with aivitals.track(model="gpt-4o", provider="openai") as call:
        call.set_usage(input_tokens=800, output_tokens=100)

    tokens = points(reader, "gen_ai.client.token.usage")
    given = by(tokens, **{"gen_ai.token.type": "input"})
    assert (given.count, given.sum) == (2, 2000)
    taken = by(tokens, **{"gen_ai.token.type": "output"})
    assert (taken.count, taken.sum) == (2, 400)
    assert tuple(given.explicit_bounds) == TOKEN_BOUNDARIES + TOKEN_BOUNDARIES_TAIL
    assert given.attributes is not None
    assert given.attributes["gen_ai.provider.name"] == "openai"
    assert given.attributes["gen_ai.request.model"] == "gpt-4o"
    assert given.attributes["gen_ai.operation.name"] == "chat"

    duration = by(points(reader, "gen_ai.client.operation.duration"))
    assert duration.count == 2
    assert tuple(duration.explicit_bounds) == SECOND_BOUNDARIES + SECOND_BOUNDARIES_TAIL
    first = by(points(reader, "gen_ai.client.operation.time_to_first_chunk"))
    assert first.count == 1  # only the call that had a first chunk
    assert tuple(first.explicit_bounds) == SECOND_BOUNDARIES + SECOND_BOUNDARIES_TAIL


def test_a_failed_call_has_its_error_type_on_the_duration(reader: InMemoryMetricReader) -> None:
    with pytest.raises(TimeoutError), aivitals.track(model="gpt-4o", provider="openai"):
        raise TimeoutError("slow")
    duration = points(reader, "gen_ai.client.operation.duration")
    assert by(duration, **{"error.type": "timeout"}).count == 1
    assert points(reader, "gen_ai.client.token.usage") == []  # no usage was reported


def test_duration_is_in_seconds(reader: InMemoryMetricReader) -> None:
    aivitals.record(aivitals.Call(provider="openai", model="gpt-4o", latency_ms=2500.0))
    assert by(points(reader, "gen_ai.client.operation.duration")).sum == pytest.approx(2.5)


def test_without_a_meter_provider_the_runtime_has_no_such_sink() -> None:
    runtime = aivitals.configure(sinks=[MemorySink()])
    try:
        assert not any(isinstance(s, OtelMetricsSink) for s in runtime.recorder.batch_sinks)
    finally:
        reset()
