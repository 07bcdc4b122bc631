"""Prometheus metrics for every call, in a registry of aivitals' own.

The names and labels are a contract: dashboards, alert rules and docs/metrics.md all use them. User
ids and prompt text are never labels (cardinality and personal data); per-user figures live in the
store. Durations are in seconds with OpenTelemetry's GenAI bucket boundaries. The label values
that come from outside (provider, model, feature, team, score name) are capped (`LabelLimits`):
late values past a cap are counted under ``_other`` (see `aivitals.cardinality`).
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Iterator
from decimal import Decimal
from itertools import accumulate
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from aivitals.cardinality import KeyCap, LabelLimits, OverflowCollector, ValueCap
from aivitals.model import Call, Score

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from aivitals.recorder import Recorder

# gen_ai.client.operation.duration and time_to_first_chunk: 0.01 s doubling to 81.92 s.
DURATION_BUCKETS = tuple(round(0.01 * 2**i, 2) for i in range(14))
TOKENS_PER_SECOND_BUCKETS = (1.0, 2, 5, 10, 20, 35, 50, 75, 100, 150, 200, 300, 500, 1000)
RATIO_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)
SCORE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)

TOKEN_TYPES = ("input", "output", "cached_input", "cache_write", "reasoning")


class PrometheusSink(Collector):
    """An inline sink that keeps Prometheus metrics; scrape ``sink.registry``.

    >>> sink = PrometheusSink()
    >>> sink.on_call(Call(provider="openai", model="gpt-4o-mini", latency_ms=300.0))
    >>> sink.registry.get_sample_value(
    ...     "aivitals_requests_total",
    ...     {"provider": "openai", "model": "gpt-4o-mini", "operation": "chat",
    ...      "status": "ok", "error_type": ""})
    1

    Why not ``prometheus_client``'s Counter and Histogram on the hot path: each update takes its
    own lock and label lookup, about 0.5 to 1 µs, and a call touches a dozen series. Here a call
    takes one lock and adds to plain numbers; the families are built from them at scrape time by
    this collector, and exposed by ``prometheus_client`` as usual.

    ``limits`` caps the label values and label sets kept (`LabelLimits`, defaults in
    docs/metrics.md); what does not fit is counted under ``_other`` and each fold in
    ``aivitals_label_overflow_total``. The dicts below hold admitted keys only, so a known key
    costs the lookup it always did, and only a key missing from them asks its cap.
    """

    name = "prometheus"

    def __init__(
        self, *, registry: CollectorRegistry | None = None, limits: LabelLimits | None = None
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        limits = limits if limits is not None else LabelLimits()
        values = limits.value_caps()
        self._series_cap = KeyCap(
            "aivitals_requests_total",
            ("provider", "model", "operation"),
            max_keys=limits.model_series,
            values=values,
            fold_order=("model",),
        )
        # The provider never folds (past the cap a call still counts for its provider); in the
        # cost family neither does the model, which arrives folded by the series cap already.
        self._cost_cap = KeyCap(
            "aivitals_cost_usd_total",
            ("provider", "model", "feature", "team"),
            max_keys=limits.attribution_series,
            values={"feature": values["feature"], "team": values["team"]},
        )
        self._flight_cap = KeyCap(
            "aivitals_requests_in_flight",
            ("provider", "model"),
            max_keys=limits.model_series,
            values=values,
            fold_order=("model",),
        )
        self._quality_cap = KeyCap(
            "aivitals_quality_score",
            ("name", "model", "feature"),
            max_keys=limits.model_series,
            values={
                "name": ValueCap(limits.score_names),
                "model": values["model"],
                "feature": values["feature"],
            },
        )
        self.overflow = OverflowCollector(
            [self._series_cap, self._cost_cap, self._flight_cap, self._quality_cap]
        )
        """Counts the folds; `watch` other parts' caps (the live windows') to export theirs."""
        self._lock = threading.Lock()
        self._series: dict[tuple[str, str, str], _Series] = {}
        self._in_flight: dict[tuple[str, str], int] = {}
        # Scores are rare next to calls: the plain client histogram is fine for them.
        self.quality = Histogram(
            "aivitals_quality_score",
            "Quality scores, normalised to 0..1.",
            ("name", "model", "feature"),
            buckets=SCORE_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(self)
        self.registry.register(self.overflow)

    def watch(self, recorder: Recorder) -> None:
        """Also export the recorder's own health (drops, sink failures, queue depth)."""
        self.registry.register(_RecorderCollector(recorder))

    def on_call(self, call: Call) -> None:
        key = (call.provider, call.model, call.operation)
        seconds = call.latency_ms / 1000.0
        speed = call.output_tokens_per_second
        utilisation = call.context_utilisation
        with self._lock:
            series = self._series.get(key)
            if series is None:
                key = self._series_cap.admit(key)
                series = self._series.get(key)
                if series is None:
                    series = self._series[key] = _Series()
            outcome = (call.status, call.error_type or "")
            series.requests[outcome] = series.requests.get(outcome, 0) + 1
            series.duration.observe(seconds)
            if call.ttft_ms is not None:
                series.ttft.observe(call.ttft_ms / 1000.0)
            tokens = series.tokens
            tokens[0] += call.input_tokens
            tokens[1] += call.output_tokens
            tokens[2] += call.cached_input_tokens
            tokens[3] += call.cache_write_tokens
            tokens[4] += call.reasoning_tokens
            if call.cost_usd is None:
                series.unpriced += 1
            else:
                who = (call.feature or "", call.team or "")
                usd = series.cost.get(who)
                if usd is None:
                    who = self._cost_cap.admit((*key[:2], *who))[2:]
                    usd = series.cost.get(who, _ZERO)
                series.cost[who] = usd + call.cost_usd
            if call.cache is not None:
                cache = (call.cache, call.cache_level or "")
                series.cache[cache] = series.cache.get(cache, 0) + 1
            if call.saved_usd:
                series.saved += call.saved_usd
            if speed is not None:
                series.output_speed.observe(speed)
            if utilisation is not None:
                series.context.observe(utilisation)

    def on_score(self, score: Score) -> None:
        labels = self._quality_cap.admit((score.name, score.model or "", score.feature or ""))
        self.quality.labels(*labels).observe(score.normalised)

    def call_started(self, provider: str, model: str) -> None:
        key = (provider, model)
        with self._lock:
            count = self._in_flight.get(key)
            if count is None:
                key = self._flight_cap.admit(key)
                count = self._in_flight.get(key, 0)
            self._in_flight[key] = count + 1

    def call_ended(self, provider: str, model: str) -> None:
        key = (provider, model)
        with self._lock:
            count = self._in_flight.get(key)
            if count is None:
                # Folds as its start did (caps only grow), and that start was counted already.
                key = self._flight_cap.admit(key, count=False)
                count = self._in_flight.get(key, 0)
            self._in_flight[key] = count - 1

    def describe(self) -> Iterator[Metric]:
        return iter(self._families({}, {}))

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            series = {key: value.copy() for key, value in self._series.items()}
            in_flight = dict(self._in_flight)
        return iter(self._families(series, in_flight))

    @staticmethod
    def _families(
        series: dict[tuple[str, str, str], _Series], in_flight: dict[tuple[str, str], int]
    ) -> list[Metric]:
        model = ["provider", "model"]
        requests = CounterMetricFamily(
            "aivitals_requests",
            "Model calls by outcome.",
            labels=[*model, "operation", "status", "error_type"],
        )
        duration = HistogramMetricFamily(
            "aivitals_request_duration_seconds",
            "End-to-end latency of model calls.",
            labels=[*model, "operation"],
        )
        ttft = HistogramMetricFamily(
            "aivitals_time_to_first_token_seconds",
            "Time to the first streamed chunk.",
            labels=model,
        )
        tokens = CounterMetricFamily(
            "aivitals_tokens",
            "Tokens by type; cached_input and cache_write are part of input, reasoning of output.",
            labels=[*model, "type"],
        )
        cost = CounterMetricFamily(
            "aivitals_cost_usd",
            "Spend in US dollars on priced calls.",
            labels=[*model, "feature", "team"],
        )
        unpriced = CounterMetricFamily(
            "aivitals_unpriced_calls",
            "Calls to models with no known price (recorded with cost_usd null).",
            labels=model,
        )
        cache = CounterMetricFamily(
            "aivitals_cache_requests",
            "Response cache lookups by result (hit, miss, bypass) and level (exact, semantic).",
            labels=[*model, "result", "level"],
        )
        saved = CounterMetricFamily(
            "aivitals_cache_saved_usd",
            "What response-cache hits saved: the cost of the answers they replayed.",
            labels=model,
        )
        speed = HistogramMetricFamily(
            "aivitals_output_tokens_per_second",
            "Generation speed: output tokens per second after the first token.",
            labels=model,
        )
        context = HistogramMetricFamily(
            "aivitals_context_utilisation_ratio",
            "Input tokens as a share of the model's context window.",
            labels=model,
        )
        flight = GaugeMetricFamily(
            "aivitals_requests_in_flight", "Model calls started and not yet finished.", labels=model
        )
        per_model: dict[tuple[str, str], _Series] = {}
        for (provider, name, operation), one in sorted(series.items()):
            pair = (provider, name)
            for (status, error_type), count in sorted(one.requests.items()):
                requests.add_metric([provider, name, operation, status, error_type], count)
            one.duration.add_to(duration, [provider, name, operation])
            merged = per_model.get(pair)
            per_model[pair] = one if merged is None else merged.merged_with(one)
        for (provider, name), one in sorted(per_model.items()):
            labels = [provider, name]
            one.ttft.add_to(ttft, labels)
            for token_type, count in zip(TOKEN_TYPES, one.tokens, strict=True):
                tokens.add_metric([*labels, token_type], count)
            for (feature, team), usd in sorted(one.cost.items()):
                cost.add_metric([*labels, feature, team], float(usd))
            unpriced.add_metric(labels, one.unpriced)
            for (result, level), count in sorted(one.cache.items()):
                cache.add_metric([*labels, result, level], count)
            if one.saved:
                saved.add_metric(labels, float(one.saved))
            one.output_speed.add_to(speed, labels)
            one.context.add_to(context, labels)
        for (provider, name), count in sorted(in_flight.items()):
            flight.add_metric([provider, name], count)
        return [
            requests,
            duration,
            ttft,
            tokens,
            cost,
            unpriced,
            cache,
            saved,
            speed,
            context,
            flight,
        ]


_ZERO = Decimal(0)


def _le(bound: float) -> str:
    # The way client_python writes a bucket bound ("0.01", "1.0", "81.92"), for our bounds.
    return repr(float(bound))


class _Histogram:
    """Bucket counts and a sum, observed under the sink's lock."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last is +Inf
        self.sum = 0.0

    @property
    def count(self) -> int:
        return sum(self.counts)

    def observe(self, value: float) -> None:
        # bisect_left: a value equal to a bound belongs to that bucket (le is "less or equal").
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def copy(self) -> _Histogram:
        other = _Histogram(self.bounds)
        other.counts = list(self.counts)
        other.sum = self.sum
        return other

    def merged_with(self, other: _Histogram) -> _Histogram:
        merged = self.copy()
        merged.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        merged.sum += other.sum
        return merged

    def add_to(self, family: HistogramMetricFamily, labels: list[str]) -> None:
        cumulative = list(accumulate(self.counts))
        buckets = [
            (_le(bound), float(total))
            for bound, total in zip(self.bounds, cumulative, strict=False)
        ]
        buckets.append(("+Inf", float(cumulative[-1])))
        family.add_metric(labels, buckets, self.sum)


class _Series:
    """Everything counted for one (provider, model, operation)."""

    __slots__ = (
        "cache",
        "context",
        "cost",
        "duration",
        "output_speed",
        "requests",
        "saved",
        "tokens",
        "ttft",
        "unpriced",
    )

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str], int] = {}
        self.duration = _Histogram(DURATION_BUCKETS)
        self.ttft = _Histogram(DURATION_BUCKETS)
        self.tokens = [0] * len(TOKEN_TYPES)
        self.unpriced = 0
        self.cost: dict[tuple[str, str], Decimal] = {}
        self.cache: dict[tuple[str, str], int] = {}
        self.saved = _ZERO
        self.output_speed = _Histogram(TOKENS_PER_SECOND_BUCKETS)
        self.context = _Histogram(RATIO_BUCKETS)

    def copy(self) -> _Series:
        other = _Series()
        other.requests = dict(self.requests)
        other.duration = self.duration.copy()
        other.ttft = self.ttft.copy()
        other.tokens = list(self.tokens)
        other.unpriced = self.unpriced
        other.cost = dict(self.cost)
        other.cache = dict(self.cache)
        other.saved = self.saved
        other.output_speed = self.output_speed.copy()
        other.context = self.context.copy()
        return other

    def merged_with(self, other: _Series) -> _Series:
        """Two operations of one model, summed for the families labelled by model only."""
        merged = self.copy()
        merged.ttft = self.ttft.merged_with(other.ttft)
        merged.tokens = [a + b for a, b in zip(self.tokens, other.tokens, strict=True)]
        merged.unpriced += other.unpriced
        for key, usd in other.cost.items():
            merged.cost[key] = merged.cost.get(key, _ZERO) + usd
        for key, count in other.cache.items():
            merged.cache[key] = merged.cache.get(key, 0) + count
        merged.saved += other.saved
        merged.output_speed = self.output_speed.merged_with(other.output_speed)
        merged.context = self.context.merged_with(other.context)
        return merged


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
        waiting = self._recorder.buffered()
        depth = GaugeMetricFamily(
            "aivitals_queue_depth",
            "Calls and scores accepted and not yet delivered, in every buffer of this process.",
        )
        depth.add_metric([], sum(waiting.values()))
        yield depth
        buffered = GaugeMetricFamily(
            "aivitals_buffered_items",
            "Calls and scores waiting, by sink and buffer (queue, store_retry, "
            "store_pending_files, exporter_spool).",
            labels=["sink", "buffer"],
        )
        for (sink, buffer), count in sorted(waiting.items()):
            buffered.add_metric([sink, buffer], count)
        yield buffered
        lost = CounterMetricFamily(
            "aivitals_lost_items",
            "Calls and scores accepted and then lost for good, by sink and reason.",
            labels=["sink", "reason"],
        )
        for (sink, reason), count in sorted(self._recorder.lost().items()):
            lost.add_metric([sink, reason], count)
        yield lost
