"""The gateway's own metrics: requests it answered itself, the response cache's size, and
the gateway's own time on each request (`overhead`).

Calls that reach an upstream (or the cache) are counted by the Prometheus sink like any other;
these count what never became a call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from aivitals.cardinality import KeyCap, OverflowCollector, ValueCap
from aivitals.metric_schema import (
    GATEWAY_CACHE_BYTES,
    GATEWAY_CACHE_ENTRIES,
    GATEWAY_OVERHEAD,
    GATEWAY_REFUSALS,
    GUARDRAIL_ACTIONS,
)

REASONS = ("auth", "bad_request", "rate_limit", "budget", "limits_unavailable")
MAX_REASONS = 32
"""Reasons are named in code, not by clients; the cap only stops a bug from growing the set."""


class GatewayMetrics:
    """``aivitals_gateway_refusals_total{reason}``, the cache gauges and
    ``aivitals_gateway_overhead_seconds{route,stream}``, in ``registry``.

    Past `MAX_REASONS` distinct reasons a new one is counted as ``_other`` (and as a fold in
    ``aivitals_label_overflow_total``).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self._reasons = KeyCap(
            GATEWAY_REFUSALS.name,
            GATEWAY_REFUSALS.labels,
            max_keys=MAX_REASONS,
            values={"reason": ValueCap(MAX_REASONS)},
        )
        self.registry.register(OverflowCollector([self._reasons]))
        self.refusals = Counter(
            GATEWAY_REFUSALS.name,
            GATEWAY_REFUSALS.help,
            GATEWAY_REFUSALS.labels,
            registry=self.registry,
        )
        for reason in REASONS:
            self.refusals.labels(*self._reasons.admit((reason,)))  # shows from the start, at 0
        self.cache_entries = Gauge(
            GATEWAY_CACHE_ENTRIES.name, GATEWAY_CACHE_ENTRIES.help, registry=self.registry
        )
        self.cache_bytes = Gauge(
            GATEWAY_CACHE_BYTES.name, GATEWAY_CACHE_BYTES.help, registry=self.registry
        )

        self.guardrail_actions = Counter(
            GUARDRAIL_ACTIONS.name,
            GUARDRAIL_ACTIONS.help,
            GUARDRAIL_ACTIONS.labels,
            registry=self.registry,
        )
        self.overhead = Histogram(
            GATEWAY_OVERHEAD.name,
            GATEWAY_OVERHEAD.help,
            GATEWAY_OVERHEAD.labels,
            buckets=GATEWAY_OVERHEAD.buckets,
            registry=self.registry,
        )
        # The labelled children by (route, streamed): a label lookup costs more than the
        # observation itself, on every request. Routes are the gateway's own few paths.
        self._overhead: dict[tuple[str, bool], Histogram] = {}

    def spent(self, route: str, streamed: bool, seconds: float) -> None:
        """One request's overhead (`aivitals.gateway.overhead`)."""
        child = self._overhead.get((route, streamed))
        if child is None:
            child = self.overhead.labels(route, "true" if streamed else "false")
            self._overhead[route, streamed] = child
        child.observe(seconds)

    def watch_guardrails(self, configured: Iterable[tuple[str, str, str]]) -> None:
        """Show each configured guardrail's (name, side, action) from the start, at 0."""
        for labels in configured:
            self.guardrail_actions.labels(*labels)

    def guardrail_acted(self, name: str, side: str, action: str) -> None:
        self.guardrail_actions.labels(name, side, action).inc()

    def watch_cache(self, entries: Callable[[], int], size: Callable[[], int]) -> None:
        self.cache_entries.set_function(entries)
        self.cache_bytes.set_function(size)

    def refused(self, reason: str) -> None:
        self.refusals.labels(*self._reasons.admit((reason,))).inc()
