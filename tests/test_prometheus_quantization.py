"""Self-hosted models: the quantisation serving each call is a bounded Prometheus label."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from aivitals.sinks.prometheus import PrometheusSink

from .support.helpers import make_call

NAME = "aivitals_calls_by_quantization_total"


def value(sink: PrometheusSink, level: str, model: str = "qwen2.5-3b") -> float | None:
    labels = {"provider": "vllm", "model": model, "quantization": level}
    return sink.registry.get_sample_value(NAME, labels)


def test_calls_are_counted_by_their_quantization() -> None:
    sink = PrometheusSink(registry=CollectorRegistry())
    for level in ("q4_K_M", "q4_K_M", "fp8"):
        sink.on_call(make_call(provider="vllm", model="qwen2.5-3b", quantization=level))
    sink.on_call(make_call(provider="vllm", model="qwen2.5-3b"))  # none reported: not counted
    assert (value(sink, "q4_K_M"), value(sink, "fp8")) == (2.0, 1.0)
    samples = [
        s
        for f in sink.registry.collect()
        if f.name == NAME.removesuffix("_total")
        for s in f.samples
        if s.name == NAME
    ]
    assert len(samples) == 2


def test_the_label_keeps_at_most_32_values_and_counts_the_rest_as_other() -> None:
    sink = PrometheusSink(registry=CollectorRegistry())
    for i in range(40):
        sink.on_call(make_call(provider="vllm", model="qwen2.5-3b", quantization=f"q{i}"))
    assert value(sink, "q31") == 1.0
    assert value(sink, "q32") is None
    assert value(sink, "_other") == 8.0
    folds = sink.registry.get_sample_value(
        "aivitals_label_overflow_total", {"metric": NAME, "label": "quantization"}
    )
    assert folds == 8.0
