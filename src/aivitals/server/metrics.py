"""The server's own metrics: requests by route and status, their durations, and the process.

They live in a registry of their own (`ServerMetrics.registry`), apart from the calls' metrics in
the Prometheus sink's registry, and ``/metrics`` exposes both through it. Routes are labelled by
their template (``/api/v1/calls``), never the raw path; a request no route matched is labelled
``unmatched``, a method outside the usual seven ``other`` and a status HTTP does not name by its
class (``5xx``), so scanners and odd upstreams cannot grow the label set; and whatever is still
new past ``max_series`` label sets folds into ``_other`` (`aivitals.cardinality`).

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
from http import HTTPStatus

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

from aivitals.cardinality import OVERFLOW_METRIC, KeyCap, OverflowCollector, ValueCap
from aivitals.metric_schema import (
    HTTP_DURATION,
    HTTP_IN_FLIGHT,
    HTTP_REQUESTS,
    INGEST_REFUSED,
    OTLP_ITEMS,
    OTLP_OUTCOMES,
)

UNMATCHED = "unmatched"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_STATUSES = {int(status): str(int(status)) for status in HTTPStatus}
MAX_SERIES = 1_000
"""(method, route, status) label sets kept: the app has tens of routes, each answering a few
statuses; a route label past 200 distinct values can only be a bug upstream of us."""


class _Exposed(Collector):
    """Every metric of other registries, so one scrape reads them all, and the label overflow.

    A scrape may carry a family once only, and the sink, the gateway and the server each count
    their folds in ``aivitals_label_overflow_total``: their families are merged into one here.
    """

    def __init__(self, overflow: OverflowCollector) -> None:
        self._overflow = overflow
        self.registries: list[CollectorRegistry] = []

    def describe(self) -> Iterator[Metric]:
        return self._overflow.describe()

    def collect(self) -> Iterator[Metric]:
        (merged,) = self._overflow.collect()
        for registry in self.registries:
            for family in registry.collect():
                if family.name == OVERFLOW_METRIC:
                    merged.samples.extend(family.samples)
                else:
                    yield family
        yield merged


class ServerMetrics:
    """The HTTP server's request metrics, plus process and platform metrics, in ``registry``.

    ``max_series`` caps the (method, route, status) label sets (`MAX_SERIES` by default).
    """

    def __init__(
        self, *, registry: CollectorRegistry | None = None, max_series: int = MAX_SERIES
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.scrape_registry = self.registry
        """What ``GET /metrics`` exposes: ``registry``, or the whole server's merge under
        ``serve --workers`` (`aivitals.server.worker_metrics.merged_registry`)."""
        # Route folds first: a status kept under route="_other" still tells errors from successes.
        self._cap = KeyCap(
            HTTP_REQUESTS.name,
            HTTP_REQUESTS.labels,
            max_keys=max_series,
            values={"route": ValueCap(min(200, max_series))},
            fold_order=("route", "method", "status"),
        )
        self._exposed = _Exposed(OverflowCollector([self._cap]))
        self.registry.register(self._exposed)
        self.requests = Counter(
            HTTP_REQUESTS.name, HTTP_REQUESTS.help, HTTP_REQUESTS.labels, registry=self.registry
        )
        self.duration = Histogram(
            HTTP_DURATION.name,
            HTTP_DURATION.help,
            HTTP_DURATION.labels,
            buckets=HTTP_DURATION.buckets,
            registry=self.registry,
        )
        self.in_flight = Gauge(HTTP_IN_FLIGHT.name, HTTP_IN_FLIGHT.help, registry=self.registry)
        self.ingest_refused = Counter(
            INGEST_REFUSED.name,
            INGEST_REFUSED.help,
            INGEST_REFUSED.labels,
            registry=self.registry,
        )
        for kind in INGEST_REFUSED.values["kind"]:  # every series from the start, at 0
            for reason in INGEST_REFUSED.values["reason"]:
                self.ingest_refused.labels(kind=kind, reason=reason)
        self.otlp_items = Counter(
            OTLP_ITEMS.name, OTLP_ITEMS.help, OTLP_ITEMS.labels, registry=self.registry
        )
        for signal, outcomes in OTLP_OUTCOMES.items():
            for outcome in outcomes:
                self.otlp_items.labels(signal=signal, outcome=outcome)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)

    def refused(self, kind: str, reason: str, items: int) -> None:
        """Count ``items`` calls or scores the ingest API refused (its sender keeps them)."""
        self.ingest_refused.labels(kind=kind, reason=reason).inc(items)

    def otlp(self, signal: str, counts: dict[str, int]) -> None:
        """Count the items of an accepted OTLP export of ``signal``, by outcome."""
        for outcome, items in counts.items():
            if items:
                self.otlp_items.labels(signal=signal, outcome=outcome).inc(items)

    def expose(self, registry: CollectorRegistry) -> None:
        """Also serve ``registry``'s metrics (the calls' metrics) from this one."""
        self._exposed.registries.append(registry)

    def observe(self, *, method: str, route: str, status: int, seconds: float) -> None:
        method = method if method in _METHODS else "other"
        code = _STATUSES.get(status) or f"{status // 100}xx"
        method, route, code = self._cap.admit((method, route, code))
        self.requests.labels(method, route, code).inc()
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
