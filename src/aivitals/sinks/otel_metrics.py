"""GenAI client metrics through the application's OpenTelemetry `MeterProvider`.

Beside the Prometheus metrics, for applications whose metrics go through OpenTelemetry: the
semantic conventions' histograms, with their recommended bucket boundaries.

| instrument | unit | what |
| --- | --- | --- |
| ``gen_ai.client.token.usage`` | ``{token}`` | input and output tokens per call (``gen_ai.token.type``) |
| ``gen_ai.client.operation.duration`` | ``s`` | a call's duration, end to end (``error.type`` on failures) |
| ``gen_ai.client.operation.time_to_first_chunk`` | ``s`` | a streamed call's time to its first chunk |

Attributes: ``gen_ai.operation.name``, ``gen_ai.provider.name``, ``gen_ai.request.model``,
``gen_ai.response.model`` when known. A batch sink: recording runs on the recorder's worker
thread, never on the application's.

>>> from opentelemetry.sdk.metrics import MeterProvider
>>> from opentelemetry.sdk.metrics.export import InMemoryMetricReader
>>> from aivitals.model import Call
>>> reader = InMemoryMetricReader()
>>> sink = OtelMetricsSink(MeterProvider(metric_readers=[reader]))
>>> sink.write_calls([Call(provider="openai", model="gpt-4o", latency_ms=1200.0,
...                        input_tokens=900, output_tokens=80)])
>>> sorted(m.name for m in reader.get_metrics_data().resource_metrics[0].scope_metrics[0].metrics)
['gen_ai.client.operation.duration', 'gen_ai.client.token.usage']
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib.metadata import version

from opentelemetry import metrics as otel_metrics
from opentelemetry.util.types import AttributeValue

from aivitals.model import Call, Score
from aivitals.span_attributes import (
    ERROR_TYPE,
    OPERATION,
    OPERATIONS,
    PROVIDER,
    REQUEST_MODEL,
    RESPONSE_MODEL,
)

TOKEN_BUCKETS = tuple(float(4**power) for power in range(14))
"""1, 4, 16, ... 67,108,864: the conventions' boundaries for ``gen_ai.client.token.usage``."""

SECONDS_BUCKETS = tuple(0.01 * 2**power for power in range(14))
"""0.01, 0.02, 0.04, ... 81.92 s: the conventions' boundaries for durations and TTFT."""


class OtelMetricsSink:
    """Records each call into the GenAI client histograms of ``provider`` (a `MeterProvider`)."""

    name = "otel_metrics"

    def __init__(self, provider: otel_metrics.MeterProvider) -> None:
        meter = provider.get_meter("aivitals", version("aivitals"))
        self._tokens = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Number of input and output tokens used",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )
        self._duration = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="GenAI operation duration",
            explicit_bucket_boundaries_advisory=SECONDS_BUCKETS,
        )
        self._first_chunk = meter.create_histogram(
            "gen_ai.client.operation.time_to_first_chunk",
            unit="s",
            description="Time to receive the first chunk of a streamed response",
            explicit_bucket_boundaries_advisory=SECONDS_BUCKETS,
        )

    def write_calls(self, calls: Sequence[Call]) -> None:
        for call in calls:
            attributes: dict[str, AttributeValue] = {
                OPERATION: OPERATIONS.get(call.operation, call.operation),
                PROVIDER: call.provider,
                REQUEST_MODEL: call.model,
            }
            if call.response_model:
                attributes[RESPONSE_MODEL] = call.response_model
            if call.status == "ok" or call.input_tokens or call.output_tokens:
                # A failed call that used no token has no usage to count (the conventions
                # record usage only when the response reports it).
                self._tokens.record(call.input_tokens, {**attributes, "gen_ai.token.type": "input"})
                self._tokens.record(
                    call.output_tokens, {**attributes, "gen_ai.token.type": "output"}
                )
            if call.ttft_ms is not None:
                self._first_chunk.record(call.ttft_ms / 1000.0, attributes)
            if call.error_type:
                attributes[ERROR_TYPE] = call.error_type
            self._duration.record(call.latency_ms / 1000.0, attributes)

    def write_scores(self, scores: Sequence[Score]) -> None:
        """Scores have no GenAI client metric."""

    def close(self) -> None:
        """Nothing to close: the provider is the application's, and so is its shutdown."""


def application_meter_provider() -> otel_metrics.MeterProvider | None:
    """The global `MeterProvider` if the application set a real one (not the default proxy)."""
    provider = otel_metrics.get_meter_provider()
    if type(provider).__name__ == "_ProxyMeterProvider" or isinstance(
        provider, otel_metrics.NoOpMeterProvider
    ):
        # The proxy's class is private to the API: named, not imported.
        return None
    return provider
