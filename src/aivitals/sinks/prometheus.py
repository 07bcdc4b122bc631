"""Prometheus metrics for every call, in a registry of aivitals' own.

The names, labels, help texts and buckets are a contract declared once in `aivitals.metric_schema`
(dashboards, alert rules and docs/metrics.md use the same). User ids and prompt text are never
labels (cardinality and personal data); per-user figures live in the store. Durations are in
seconds with OpenTelemetry's GenAI bucket boundaries. The label values that come from outside
(provider, model, feature, team, score name) are capped (`LabelLimits`): late values past a cap
are counted under ``_other`` (see `aivitals.cardinality`).

Exemplars: each bucket of the duration and time-to-first-token histograms keeps the trace id of
the latest call with a trace that fell in it, exposed in the OpenMetrics format (a scraper that
asks for ``application/openmetrics-text``), so a panel jumps from a slow bucket to a trace.
"""

from __future__ import annotations

import itertools
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal
from itertools import accumulate
from typing import TYPE_CHECKING, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.samples import Exemplar

from aivitals import metric_schema as schema
from aivitals.cardinality import KeyCap, LabelLimits, OverflowCollector, ValueCap
from aivitals.metric_schema import MetricSpec
from aivitals.model import Call, Score

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric


class RecorderCounts(Protocol):
    """The recorder's own counters that the sink exports (`aivitals.recorder.RecorderStats`)."""

    @property
    def dropped_calls(self) -> int: ...
    @property
    def dropped_scores(self) -> int: ...
    @property
    def internal_errors(self) -> int: ...
    @property
    def sink_errors(self) -> Mapping[str, int]: ...
    @property
    def sink_failed_items(self) -> Mapping[str, int]: ...
    @property
    def quality_dropped(self) -> Mapping[str, int]: ...
    @property
    def quality_errors(self) -> Mapping[str, int]: ...


ByPlace = Callable[[], Mapping[tuple[str, str], int]]
"""Items by (sink, buffer) or (sink, reason), read at scrape time."""


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
            schema.REQUESTS.name,
            ("provider", "model", "operation"),
            max_keys=limits.model_series,
            values=values,
            fold_order=("model",),
        )
        # The provider never folds (past the cap a call still counts for its provider); in the
        # cost family neither does the model, which arrives folded by the series cap already.
        self._cost_cap = KeyCap(
            schema.COST.name,
            schema.COST.labels,
            max_keys=limits.attribution_series,
            values={"feature": values["feature"], "team": values["team"]},
        )
        self._flight_cap = KeyCap(
            schema.IN_FLIGHT.name,
            schema.IN_FLIGHT.labels,
            max_keys=limits.model_series,
            values=values,
            fold_order=("model",),
        )
        self._quality_cap = KeyCap(
            schema.QUALITY.name,
            schema.QUALITY.labels,
            max_keys=limits.model_series,
            values={
                "name": ValueCap(limits.score_names),
                "model": values["model"],
                "feature": values["feature"],
            },
        )
        # Quantisation names come from upstream configs, headers and model names: bounded too.
        self._quantization_cap = KeyCap(
            schema.CALLS_BY_QUANTIZATION.name,
            schema.CALLS_BY_QUANTIZATION.labels,
            max_keys=limits.model_series,
            values={"quantization": ValueCap(QUANTIZATION_VALUES)},
            fold_order=("quantization",),
        )
        self.overflow = OverflowCollector(
            [
                self._series_cap,
                self._cost_cap,
                self._flight_cap,
                self._quality_cap,
                self._quantization_cap,
            ]
        )
        """Counts the folds; `watch` other parts' caps (the live windows') to export theirs."""
        self._lock = threading.Lock()
        self._series: dict[tuple[str, str, str], _Series] = {}
        # Admitted (provider, model) -> its started and ended counters: a call's start and end
        # each advance one without a lock (see `_Flight`); new pairs are added under the lock.
        self._flights: dict[tuple[str, str], _Flight] = {}
        # Scores are rare next to calls: the plain client histogram is fine for them.
        quality = schema.QUALITY
        self.quality = Histogram(
            quality.name,
            quality.help,
            quality.labels,
            buckets=quality.buckets,
            registry=self.registry,
        )
        evaluations = schema.EVALUATIONS
        self.evaluations = Counter(
            evaluations.family, evaluations.help, evaluations.labels, registry=self.registry
        )
        self._quality_children: dict[tuple[str, str, str], Histogram] = {}
        self._verdict_children: dict[tuple[tuple[str, str, str], bool], Counter] = {}
        self.registry.register(self)
        self.registry.register(self.overflow)

    def watch(self, *, stats: RecorderCounts, buffered: ByPlace, lost: ByPlace) -> None:
        """Also export the recorder's own health: its counters, what waits and what was lost.

        Given ``recorder.stats``, ``recorder.buffered`` and ``recorder.lost``, read at scrape time.
        """
        self.registry.register(_HealthCollector(stats, buffered, lost))

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
            trace_id = call.trace_id
            if trace_id is None:
                series.duration.observe(seconds)
                if call.ttft_ms is not None:
                    series.ttft.observe(call.ttft_ms / 1000.0)
            else:
                now = time.time()
                series.duration.observe_traced(seconds, trace_id, now)
                if call.ttft_ms is not None:
                    series.ttft.observe_traced(call.ttft_ms / 1000.0, trace_id, now)
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
            if call.quantization is not None:
                quantized = series.quantization
                level = call.quantization
                count = quantized.get(level)
                if count is None:
                    level = self._quantization_cap.admit((*key[:2], level))[2]
                    count = quantized.get(level, 0)
                quantized[level] = count + 1

    def on_score(self, score: Score) -> None:
        labels = self._quality_cap.admit((score.name, score.model or "", score.feature or ""))
        normalised = score.normalised
        # Each label set's child kept at hand: ``labels()`` costs more than the observation
        # (the evaluators make several scores a call). A child lives as long as its metric.
        histogram = self._quality_children.get(labels)
        if histogram is None:
            histogram = self._quality_children.setdefault(labels, self.quality.labels(*labels))
        histogram.observe(normalised)
        if score.source == "evaluator" and normalised in (0.0, 1.0):
            # A verdict: counted, so that a rate over any range is a ratio of two counters.
            verdict = (labels, normalised == 1.0)
            counter = self._verdict_children.get(verdict)
            if counter is None:
                name, model, feature = labels
                result = "true" if verdict[1] else "false"
                counter = self._verdict_children.setdefault(
                    verdict, self.evaluations.labels(name, result, model, feature)
                )
            counter.inc()

    def call_started(self, provider: str, model: str) -> None:
        flight = self._flights.get((provider, model))
        if flight is None:
            flight = self._flight((provider, model), count=True)
        next(flight.started)

    def call_ended(self, provider: str, model: str) -> None:
        flight = self._flights.get((provider, model))
        if flight is None:
            # Folds as its start did (caps only grow), and that start was counted already.
            flight = self._flight((provider, model), count=False)
        next(flight.ended)

    def in_flight_counters(
        self, provider: str, model: str
    ) -> tuple[itertools.count[int], itertools.count[int]] | None:
        """The counters `call_started` and `call_ended` advance for this pair, to advance
        directly (``next(started)``) where a call's start and end are hot (the SDK); None if
        the pair folds, whose every start must pass its cap to be counted as a fold."""
        flight = self._flights.get((provider, model))
        if flight is None:
            flight = self._flight((provider, model), count=False)
            if self._flights.get((provider, model)) is not flight:
                return None
        return flight.started, flight.ended

    def _flight(self, key: tuple[str, str], *, count: bool) -> _Flight:
        """The pair's counters, made on its first call; a folded pair is not kept under its own
        key, so each of its starts passes the cap (and counts as a fold) as before."""
        admitted = self._flight_cap.admit(key, count=count)
        with self._lock:
            flight = self._flights.get(admitted)
            if flight is None:
                flight = self._flights[admitted] = _Flight()
        return flight

    def describe(self) -> Iterator[Metric]:
        return iter(self._families({}, {}))

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            series = {key: value.copy() for key, value in self._series.items()}
            in_flight = {key: flight.read() for key, flight in self._flights.items()}
        return iter(self._families(series, in_flight))

    @staticmethod
    def _families(
        series: dict[tuple[str, str, str], _Series], in_flight: dict[tuple[str, str], int]
    ) -> list[Metric]:
        requests = _counter(schema.REQUESTS)
        duration = _histogram(schema.DURATION)
        ttft = _histogram(schema.TIME_TO_FIRST_TOKEN)
        tokens = _counter(schema.TOKENS)
        input_tokens = _counter(schema.INPUT_TOKENS)
        output_tokens = _counter(schema.OUTPUT_TOKENS)
        cost = _counter(schema.COST)
        unpriced = _counter(schema.UNPRICED)
        cache = _counter(schema.CACHE_REQUESTS)
        saved = _counter(schema.CACHE_SAVED)
        speed = _histogram(schema.OUTPUT_SPEED)
        context = _histogram(schema.CONTEXT_UTILISATION)
        quantization = _counter(schema.CALLS_BY_QUANTIZATION)
        flight = _gauge(schema.IN_FLIGHT)
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
            # The totals as recorded; their parts are derived here, not on the caller's thread.
            # Each call has cached + cache_write <= input and reasoning <= output (the record
            # refuses anything else), so every part only grows, as a counter must.
            total_in, total_out, cache_read, cache_write, reasoning = one.tokens
            for token_type, count in zip(schema.TOKEN_TYPES, (total_in, total_out), strict=True):
                tokens.add_metric([*labels, token_type], count)
            uncached = total_in - cache_read - cache_write
            parts_in = (uncached, cache_read, cache_write)
            for kind, count in zip(schema.INPUT_KINDS, parts_in, strict=True):
                input_tokens.add_metric([*labels, kind], count)
            parts_out = (total_out - reasoning, reasoning)
            for kind, count in zip(schema.OUTPUT_KINDS, parts_out, strict=True):
                output_tokens.add_metric([*labels, kind], count)
            for (feature, team), usd in sorted(one.cost.items()):
                cost.add_metric([*labels, feature, team], float(usd))
            unpriced.add_metric(labels, one.unpriced)
            for (result, level), count in sorted(one.cache.items()):
                cache.add_metric([*labels, result, level], count)
            if one.saved:
                saved.add_metric(labels, float(one.saved))
            one.output_speed.add_to(speed, labels)
            one.context.add_to(context, labels)
            for level, count in sorted(one.quantization.items()):
                quantization.add_metric([*labels, level], count)
        for (provider, name), count in sorted(in_flight.items()):
            flight.add_metric([provider, name], count)
        return [
            requests,
            duration,
            ttft,
            tokens,
            input_tokens,
            output_tokens,
            cost,
            unpriced,
            cache,
            saved,
            speed,
            context,
            quantization,
            flight,
        ]


def _counter(spec: MetricSpec) -> CounterMetricFamily:
    return CounterMetricFamily(spec.name, spec.help, labels=spec.labels)


def _gauge(spec: MetricSpec) -> GaugeMetricFamily:
    return GaugeMetricFamily(spec.name, spec.help, labels=spec.labels)


def _histogram(spec: MetricSpec) -> HistogramMetricFamily:
    return HistogramMetricFamily(spec.name, spec.help, labels=spec.labels)


_ZERO = Decimal(0)

QUANTIZATION_VALUES = 32
"""Distinct ``quantization`` label values one sink keeps (``q4_K_M``, ``fp8``, ``awq``...); later
ones are counted under ``_other``."""


def _le(bound: float) -> str:
    # The way client_python writes a bucket bound ("0.01", "1.0", "81.92"), for our bounds.
    return repr(float(bound))


_Traced = tuple[str, float, float]
"""An exemplar: trace id, the value observed, when (Unix seconds)."""


class _Histogram:
    """Bucket counts and a sum, observed under the sink's lock; per bucket, optionally, the
    latest traced observation (its exemplar)."""

    __slots__ = ("bounds", "counts", "exemplars", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last is +Inf
        self.sum = 0.0
        self.exemplars: list[_Traced | None] | None = None  # made at the first traced value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def observe(self, value: float) -> None:
        # bisect_left: a value equal to a bound belongs to that bucket (le is "less or equal").
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def observe_traced(self, value: float, trace_id: str, now: float) -> None:
        """Observe a value of a call with a trace: its bucket's exemplar from now on."""
        index = bisect_left(self.bounds, value)
        self.counts[index] += 1
        self.sum += value
        if self.exemplars is None:
            self.exemplars = [None] * len(self.counts)
        self.exemplars[index] = (trace_id, value, now)

    def copy(self) -> _Histogram:
        other = _Histogram(self.bounds)
        other.counts = list(self.counts)
        other.sum = self.sum
        if self.exemplars is not None:
            other.exemplars = list(self.exemplars)
        return other

    def merged_with(self, other: _Histogram) -> _Histogram:
        merged = self.copy()
        merged.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        merged.sum += other.sum
        if other.exemplars is not None:
            mine = merged.exemplars or [None] * len(merged.counts)
            merged.exemplars = [_latest(a, b) for a, b in zip(mine, other.exemplars, strict=True)]
        return merged

    def add_to(self, family: HistogramMetricFamily, labels: list[str]) -> None:
        cumulative = list(accumulate(self.counts))
        bounds = [*(_le(bound) for bound in self.bounds), "+Inf"]
        exemplars = self.exemplars
        if exemplars is None:
            family.add_metric(
                labels,
                [(le, float(total)) for le, total in zip(bounds, cumulative, strict=True)],
                self.sum,
            )
            return
        buckets: list[tuple[str, float] | tuple[str, float, Exemplar]] = []
        for le, total, traced in zip(bounds, cumulative, exemplars, strict=True):
            if traced is None:
                buckets.append((le, float(total)))
            else:
                trace_id, value, when = traced
                buckets.append((le, float(total), Exemplar({"trace_id": trace_id}, value, when)))
        family.add_metric(labels, buckets, self.sum)


def _latest(a: _Traced | None, b: _Traced | None) -> _Traced | None:
    if a is None or b is None:
        return a or b
    return a if a[2] >= b[2] else b


class _Series:
    """Everything counted for one (provider, model, operation)."""

    __slots__ = (
        "cache",
        "context",
        "cost",
        "duration",
        "output_speed",
        "quantization",
        "requests",
        "saved",
        "tokens",
        "ttft",
        "unpriced",
    )

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str], int] = {}
        self.duration = _Histogram(schema.DURATION.buckets)
        self.ttft = _Histogram(schema.TIME_TO_FIRST_TOKEN.buckets)
        # input, output, cached reads, cache writes, reasoning: the call's own fields.
        self.tokens = [0] * 5
        self.unpriced = 0
        self.cost: dict[tuple[str, str], Decimal] = {}
        self.cache: dict[tuple[str, str], int] = {}
        self.saved = _ZERO
        self.output_speed = _Histogram(schema.OUTPUT_SPEED.buckets)
        self.context = _Histogram(schema.CONTEXT_UTILISATION.buckets)
        self.quantization: dict[str, int] = {}

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
        other.quantization = dict(self.quantization)
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
        for level, count in other.quantization.items():
            merged.quantization[level] = merged.quantization.get(level, 0) + count
        return merged


class _Flight:
    """Calls in flight for one label pair: how many started and how many ended, each counted
    by an `itertools.count` whose ``next()`` is one C call that the GIL makes atomic, so the
    caller's thread takes no lock. A scrape reads ``started - ended``.

    A count has no public read, so a read advances it too: each read advances both, which
    cancels in the difference (reads are made under the sink's lock, one at a time). ``ended``
    is read first: a call that ends between the two reads is still counted as started, so the
    gauge never reads below the calls in flight, and it is exact for every call that ended
    before the scrape began.
    """

    __slots__ = ("ended", "started")

    def __init__(self) -> None:
        self.started = itertools.count()
        self.ended = itertools.count()

    def read(self) -> int:
        ended = next(self.ended)
        return next(self.started) - ended


class _HealthCollector(Collector):
    """Reads the recorder's own counters at scrape time, so recording pays nothing for them."""

    def __init__(self, stats: RecorderCounts, buffered: ByPlace, lost: ByPlace) -> None:
        self._stats = stats
        self._buffered = buffered
        self._lost = lost

    def collect(self) -> Iterator[Metric]:
        stats = self._stats
        dropped = _counter(schema.DROPPED_CALLS)
        dropped.add_metric([], stats.dropped_calls)
        yield dropped
        dropped_scores = _counter(schema.DROPPED_SCORES)
        dropped_scores.add_metric([], stats.dropped_scores)
        yield dropped_scores
        errors = _counter(schema.SINK_ERRORS)
        failed = _counter(schema.SINK_FAILED_ITEMS)
        for sink, count in sorted(stats.sink_errors.items()):
            errors.add_metric([sink], count)
            failed.add_metric([sink], stats.sink_failed_items.get(sink, 0))
        yield errors
        yield failed
        internal = _counter(schema.INTERNAL_ERRORS)
        internal.add_metric([], stats.internal_errors)
        yield internal
        waiting = self._buffered()
        depth = _gauge(schema.QUEUE_DEPTH)
        depth.add_metric([], sum(waiting.values()))
        yield depth
        buffered = _gauge(schema.BUFFERED_ITEMS)
        for (sink, buffer), count in sorted(waiting.items()):
            buffered.add_metric([sink, buffer], count)
        yield buffered
        lost = _counter(schema.LOST_ITEMS)
        for (sink, reason), count in sorted(self._lost().items()):
            lost.add_metric([sink, reason], count)
        yield lost
        quality_dropped = _counter(schema.QUALITY_DROPPED)
        for reason, count in sorted(stats.quality_dropped.items()):
            quality_dropped.add_metric([reason], count)
        yield quality_dropped
        quality_errors = _counter(schema.QUALITY_ERRORS)
        for part, count in sorted(stats.quality_errors.items()):
            quality_errors.add_metric([part], count)
        yield quality_errors
