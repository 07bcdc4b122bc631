"""The gateway's own metrics: requests it answered itself, and the response cache's size.

Calls that reach an upstream (or the cache) are counted by the Prometheus sink like any other;
these count what never became a call.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge

REASONS = ("auth", "bad_request", "rate_limit", "budget")


class GatewayMetrics:
    """``aivitals_gateway_refusals_total{reason}`` and the cache gauges, in ``registry``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.refusals = Counter(
            "aivitals_gateway_refusals",
            "Requests the gateway answered itself without calling an upstream, by reason: auth "
            "(401), bad_request (4xx), rate_limit (429), budget (429).",
            ("reason",),
            registry=self.registry,
        )
        for reason in REASONS:
            self.refusals.labels(reason)  # every reason shows from the start, at 0
        self.cache_entries = Gauge(
            "aivitals_gateway_cache_entries",
            "Answers held by the response cache.",
            registry=self.registry,
        )
        self.cache_bytes = Gauge(
            "aivitals_gateway_cache_bytes",
            "Bytes held by the response cache.",
            registry=self.registry,
        )

    def watch_cache(self, entries: Callable[[], int], size: Callable[[], int]) -> None:
        self.cache_entries.set_function(entries)
        self.cache_bytes.set_function(size)

    def refused(self, reason: str) -> None:
        self.refusals.labels(reason).inc()
