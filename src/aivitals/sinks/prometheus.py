"""Prometheus metrics for every call, in a registry of aivitals' own.

The names and labels are a contract: dashboards, alert rules and docs/metrics.md all use them. User
ids and prompt text are never labels (cardinality and personal data); per-user figures live in the
store. Durations are in seconds with OpenTelemetry's GenAI bucket boundaries.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from aivitals.model import Call, Score

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from aivitals.recorder import Recorder

# gen_ai.client.operation.duration and time_to_first_chunk: 0.01 s doubling to 81.92 s.
DURATION_BUCKETS = tuple(round(0.01 * 2**i, 2) for i in range(14))
TOKENS_PER_SECOND_BUCKETS = (1, 2, 5, 10, 20, 35, 50, 75, 100, 150, 200, 300, 500, 1000)
RATIO_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)
SCORE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)

TOKEN_TYPES = ("input", "output", "cached_input", "cache_write", "reasoning")


class PrometheusSink:
    """An inline sink that updates Prometheus metrics; scrape ``sink.registry``.

    >>> sink = PrometheusSink()
    >>> sink.on_call(Call(provider="openai", model="gpt-4o-mini", latency_ms=300.0))
    >>> sink.registry.get_sample_value(
    ...     "aivitals_requests_total",
    ...     {"provider": "openai", "model": "gpt-4o-mini", "operation": "chat",
    ...      "status": "ok", "error_type": ""})
    1.0
    """

    name = "prometheus"

    def __init__(self, *, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        model_labels = ("provider", "model")
        self.requests = Counter(
            "aivitals_requests",
            "Model calls by outcome.",
            (*model_labels, "operation", "status", "error_type"),
            registry=r,
        )
        self.duration = Histogram(
            "aivitals_request_duration_seconds",
            "End-to-end latency of model calls.",
            (*model_labels, "operation"),
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "aivitals_time_to_first_token_seconds",
            "Time to the first streamed chunk.",
            model_labels,
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "aivitals_tokens",
            "Tokens by type; cached_input and cache_write are part of input, reasoning of output.",
            (*model_labels, "type"),
            registry=r,
        )
        self.cost = Counter(
            "aivitals_cost_usd",
            "Spend in US dollars on priced calls.",
            (*model_labels, "feature", "team"),
            registry=r,
        )
        self.unpriced = Counter(
            "aivitals_unpriced_calls",
            "Calls to models with no known price (recorded with cost_usd null).",
            model_labels,
            registry=r,
        )
        self.cache = Counter(
            "aivitals_cache_requests",
            "Response cache lookups by result (hit, miss, bypass) and level (exact, semantic).",
            (*model_labels, "result", "level"),
            registry=r,
        )
        self.in_flight = Gauge(
            "aivitals_requests_in_flight",
            "Model calls started and not yet finished.",
            model_labels,
            registry=r,
        )
        self.output_speed = Histogram(
            "aivitals_output_tokens_per_second",
            "Generation speed: output tokens per second after the first token.",
            model_labels,
            buckets=TOKENS_PER_SECOND_BUCKETS,
            registry=r,
        )
        self.context = Histogram(
            "aivitals_context_utilisation_ratio",
            "Input tokens as a share of the model's context window.",
            model_labels,
            buckets=RATIO_BUCKETS,
            registry=r,
        )
        self.quality = Histogram(
            "aivitals_quality_score",
            "Quality scores, normalised to 0..1.",
            ("name", "model", "feature"),
            buckets=SCORE_BUCKETS,
            registry=r,
        )
        # labels() takes a lock and builds a tuple per call; caching the children per label set
        # halves the cost of an update on the caller's thread.
        self._lock = threading.Lock()
        self._per_model: dict[tuple[str, str, str], _ModelChildren] = {}
        self._per_outcome: dict[tuple[str, str, str, str, str], Counter] = {}
        self._per_cost: dict[tuple[str, str, str, str], Counter] = {}

    def watch(self, recorder: Recorder) -> None:
        """Also export the recorder's own health (drops, sink failures, queue depth)."""
        self.registry.register(_RecorderCollector(recorder))

    def on_call(self, call: Call) -> None:
        children = self._model_children(call.provider, call.model, call.operation)
        outcome_key = (
            call.provider,
            call.model,
            call.operation,
            call.status,
            call.error_type or "",
        )
        requests = self._per_outcome.get(outcome_key)
        if requests is None:
            requests = self._per_outcome.setdefault(outcome_key, self.requests.labels(*outcome_key))
        requests.inc()
        children.duration.observe(call.latency_ms / 1000.0)
        if call.ttft_ms is not None:
            children.ttft.observe(call.ttft_ms / 1000.0)
        if call.input_tokens:
            children.input_tokens.inc(call.input_tokens)
        if call.output_tokens:
            children.output_tokens.inc(call.output_tokens)
        if call.cached_input_tokens:
            children.cached_tokens.inc(call.cached_input_tokens)
        if call.cache_write_tokens:
            children.cache_write_tokens.inc(call.cache_write_tokens)
        if call.reasoning_tokens:
            children.reasoning_tokens.inc(call.reasoning_tokens)
        if call.cost_usd is None:
            children.unpriced.inc()
        elif call.cost_usd:
            cost_key = (call.provider, call.model, call.feature or "", call.team or "")
            cost = self._per_cost.get(cost_key)
            if cost is None:
                cost = self._per_cost.setdefault(cost_key, self.cost.labels(*cost_key))
            cost.inc(float(call.cost_usd))
        if call.cache is not None:
            self.cache.labels(call.provider, call.model, call.cache, call.cache_level or "").inc()
        speed = call.output_tokens_per_second
        if speed is not None:
            children.output_speed.observe(speed)
        utilisation = call.context_utilisation
        if utilisation is not None:
            children.context.observe(utilisation)

    def on_score(self, score: Score) -> None:
        self.quality.labels(score.name, score.model or "", score.feature or "").observe(
            score.normalised
        )

    def call_started(self, provider: str, model: str) -> None:
        self.in_flight.labels(provider, model).inc()

    def call_ended(self, provider: str, model: str) -> None:
        self.in_flight.labels(provider, model).dec()

    def _model_children(self, provider: str, model: str, operation: str) -> _ModelChildren:
        key = (provider, model, operation)
        children = self._per_model.get(key)
        if children is None:
            with self._lock:
                children = self._per_model.get(key)
                if children is None:
                    children = self._per_model[key] = _ModelChildren(
                        self, provider, model, operation
                    )
        return children


class _ModelChildren:
    """The metric children of one (provider, model, operation), resolved once."""

    __slots__ = (
        "cache_write_tokens",
        "cached_tokens",
        "context",
        "duration",
        "input_tokens",
        "output_speed",
        "output_tokens",
        "reasoning_tokens",
        "ttft",
        "unpriced",
    )

    def __init__(self, sink: PrometheusSink, provider: str, model: str, operation: str) -> None:
        self.duration = sink.duration.labels(provider, model, operation)
        self.ttft = sink.ttft.labels(provider, model)
        self.input_tokens = sink.tokens.labels(provider, model, "input")
        self.output_tokens = sink.tokens.labels(provider, model, "output")
        self.cached_tokens = sink.tokens.labels(provider, model, "cached_input")
        self.cache_write_tokens = sink.tokens.labels(provider, model, "cache_write")
        self.reasoning_tokens = sink.tokens.labels(provider, model, "reasoning")
        self.unpriced = sink.unpriced.labels(provider, model)
        self.output_speed = sink.output_speed.labels(provider, model)
        self.context = sink.context.labels(provider, model)


class _RecorderCollector(Collector):
    """Reads the recorder's own counters at scrape time, so recording pays nothing for them."""

    def __init__(self, recorder: Recorder) -> None:
        self._recorder = recorder

    def collect(self) -> Iterator[Metric]:
        stats = self._recorder.stats
        dropped = CounterMetricFamily(
            "aivitals_dropped_calls",
            "Calls dropped because the recorder's queue was full.",
        )
        dropped.add_metric([], stats.dropped_calls)
        yield dropped
        dropped_scores = CounterMetricFamily(
            "aivitals_dropped_scores",
            "Scores dropped because the recorder's queue was full.",
        )
        dropped_scores.add_metric([], stats.dropped_scores)
        yield dropped_scores
        errors = CounterMetricFamily(
            "aivitals_sink_errors", "Failures raised by a sink (never propagated).", labels=["sink"]
        )
        failed = CounterMetricFamily(
            "aivitals_sink_failed_items",
            "Calls and scores in batches a sink failed to take.",
            labels=["sink"],
        )
        for sink, count in sorted(stats.sink_errors.items()):
            errors.add_metric([sink], count)
            failed.add_metric([sink], stats.sink_failed_items[sink])
        yield errors
        yield failed
        internal = CounterMetricFamily(
            "aivitals_internal_errors", "Failures inside aivitals itself (never propagated)."
        )
        internal.add_metric([], stats.internal_errors)
        yield internal
        depth = GaugeMetricFamily(
            "aivitals_queue_depth", "Calls and scores waiting for the batch sinks."
        )
        depth.add_metric([], self._recorder.queue_depth)
        yield depth
