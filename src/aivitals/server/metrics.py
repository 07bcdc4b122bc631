"""The server's own metrics: requests by route and status, their durations, and the process.

They live in a registry of their own (`ServerMetrics.registry`), apart from the calls' metrics in
the Prometheus sink's registry, and ``/metrics`` exposes both through it. Routes are labelled by
their template (``/api/v1/calls``), never the raw path; a request no route matched is labelled
``unmatched``, so scanners cannot grow the label set.

>>> metrics = ServerMetrics()
>>> metrics.observe(method="GET", route="/healthz", status=200, seconds=0.002)
>>> metrics.registry.get_sample_value(
...     "aivitals_http_server_requests_total",
...     {"method": "GET", "route": "/healthz", "status": "200"})
1.0
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

UNMATCHED = "unmatched"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Ingest and reads answer in milliseconds; the upper buckets catch slow store queries.
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class RegistryCollector(Collector):
    """Exposes every metric of another registry, so one scrape reads both."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        yield from self._registry.collect()


class ServerMetrics:
    """The HTTP server's request metrics, plus process and platform metrics, in ``registry``."""

    def __init__(self, *, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.requests = Counter(
            "aivitals_http_server_requests",
            "HTTP requests answered by the aivitals server, by route template and status.",
            ("method", "route", "status"),
            registry=self.registry,
        )
        self.duration = Histogram(
            "aivitals_http_server_request_duration_seconds",
            "Time from a request's arrival to the end of its response.",
            ("method", "route"),
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "aivitals_http_server_requests_in_flight",
            "HTTP requests being handled now.",
            registry=self.registry,
        )
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)

    def expose(self, registry: CollectorRegistry) -> None:
        """Also serve ``registry``'s metrics (the calls' metrics) from this one."""
        self.registry.register(RegistryCollector(registry))

    def observe(self, *, method: str, route: str, status: int, seconds: float) -> None:
        method = method if method in _METHODS else "other"
        self.requests.labels(method, route, str(status)).inc()
        self.duration.labels(method, route).observe(seconds)


class MetricsMiddleware:
    """ASGI middleware that counts and times every HTTP request into a `ServerMetrics`."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.in_flight.dec()
            # The router put the matched route into the scope it shares with us.
            route = getattr(scope.get("route"), "path", None) or UNMATCHED
            self.metrics.observe(
                method=scope["method"],
                route=route,
                status=status,
                seconds=time.perf_counter() - started,
            )
