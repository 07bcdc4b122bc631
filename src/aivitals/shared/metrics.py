"""The shared state's own metrics: whether Redis answers, its errors, fallbacks and round trips.

Declared in `aivitals.metric_schema` (``SHARED_METRICS``), in a registry of their own that
``/metrics`` exposes with the gateway's.

>>> metrics = SharedMetrics()
>>> metrics.fallback("limits")
>>> metrics.registry.get_sample_value("aivitals_redis_fallbacks_total", {"feature": "limits"})
1.0
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from aivitals.metric_schema import (
    REDIS_ERRORS,
    REDIS_FALLBACKS,
    REDIS_FEATURES,
    REDIS_ROUND_TRIP,
    REDIS_UP,
)


class SharedMetrics:
    """``aivitals_redis_up``, ``aivitals_redis_errors_total{feature}``,
    ``aivitals_redis_fallbacks_total{feature}`` and ``aivitals_redis_round_trip_seconds{feature}``.

    ``feature`` is one of `REDIS_FEATURES`, named in code, so no cap is needed.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.up = Gauge(REDIS_UP.name, REDIS_UP.help, registry=self.registry)
        self.errors = Counter(
            REDIS_ERRORS.family, REDIS_ERRORS.help, REDIS_ERRORS.labels, registry=self.registry
        )
        self.fallbacks = Counter(
            REDIS_FALLBACKS.family,
            REDIS_FALLBACKS.help,
            REDIS_FALLBACKS.labels,
            registry=self.registry,
        )
        self.round_trip = Histogram(
            REDIS_ROUND_TRIP.name,
            REDIS_ROUND_TRIP.help,
            REDIS_ROUND_TRIP.labels,
            buckets=REDIS_ROUND_TRIP.buckets,
            registry=self.registry,
        )
        for feature in REDIS_FEATURES:  # every series shows from the start, at 0
            self.errors.labels(feature)
            self.fallbacks.labels(feature)
            self.round_trip.labels(feature)

    def error(self, feature: str) -> None:
        self.errors.labels(feature).inc()

    def fallback(self, feature: str) -> None:
        self.fallbacks.labels(feature).inc()

    def observe(self, feature: str, seconds: float) -> None:
        self.round_trip.labels(feature).observe(seconds)
