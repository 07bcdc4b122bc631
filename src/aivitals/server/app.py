"""`create_app`: the server as an ASGI app, from a runtime and an optional store.

The app holds no globals: everything it uses arrives as an argument and lives in its
`ServerContext`. With a `Gateway`, its OpenAI-compatible ``/v1/...`` routes are mounted too, its
upstream client lives as long as the app, and ``/readyz`` checks its upstreams.

>>> from fastapi.testclient import TestClient
>>> from aivitals.recorder import Recorder
>>> from aivitals.attribution import Attribution
>>> from aivitals.runtime import Runtime
>>> from aivitals.sinks.prometheus import PrometheusSink
>>> sink = PrometheusSink()
>>> runtime = Runtime(recorder=Recorder(inline_sinks=[sink]), prometheus=sink, windows=None,
...                   defaults=Attribution())
>>> client = TestClient(create_app(runtime=runtime, store=None))
>>> client.post("/api/v1/calls", json={"provider": "openai", "model": "gpt-4o-mini",
...                                    "latency_ms": 420.0}).status_code
202
>>> runtime.recorder.close()
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from functools import partial
from importlib.metadata import version

import anyio.to_thread
from fastapi import Depends, FastAPI
from prometheus_client import CollectorRegistry
from starlette.types import ASGIApp, Receive, Scope, Send

from aivitals.alerts import AlertService
from aivitals.gateway.direct import DirectRoutes
from aivitals.gateway.proxy import Gateway
from aivitals.model import utc_now
from aivitals.otlp.receive import OtlpReceiver
from aivitals.runtime import Runtime
from aivitals.server import alerts as alerts_api
from aivitals.server import ingest, ops, read
from aivitals.server.context import ReadinessCheck, ServerContext
from aivitals.server.dashboard import DashboardAuth, dashboard_router
from aivitals.server.errors import install_error_handlers
from aivitals.server.ingest_auth import IngestKey
from aivitals.server.limits import BODY_TIMEOUT_S, BodyLimitMiddleware
from aivitals.server.memory_trim import MemoryTrim
from aivitals.server.metrics import MetricsMiddleware, ServerMetrics
from aivitals.server.otlp import otlp_router
from aivitals.server.system_metrics import SystemMetrics
from aivitals.store.sql import SqlStore

MAX_BODY_BYTES = 5 * 1024 * 1024
"""Largest request body the API reads (a full batch of 1,000 calls is about 1 MB)."""


class _Server(FastAPI):
    """FastAPI, with the gateway's routes answered before its own layers (`gateway.direct`)."""

    direct: DirectRoutes | None = None
    direct_app: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.direct is not None and self.direct_app is not None and self.direct.match(scope):
            scope["app"] = self
            await self.direct_app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(
    *,
    runtime: Runtime,
    store: SqlStore | None,
    registry: CollectorRegistry | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    body_timeout_s: float = BODY_TIMEOUT_S,
    queue_limit: int | None = None,
    close_on_shutdown: bool = False,
    now: Callable[[], datetime] = utc_now,
    checks: Mapping[str, ReadinessCheck] | None = None,
    gateway: Gateway | None = None,
    dashboard_token: str | None = None,
    alerts: AlertService | None = None,
    ingest_key: str | None = None,
    otlp: OtlpReceiver | None = None,
    system: SystemMetrics | None = None,
) -> FastAPI:
    """The aivitals server: ingest into ``runtime``, read from ``store``, metrics and health.

    ``registry`` receives the server's own metrics (a fresh one by default); the runtime's
    Prometheus metrics are exposed through it too. ``queue_limit``: see `ServerContext`.
    ``close_on_shutdown`` closes the runtime's recorder (flushing every recorded call to the
    store) when the ASGI server shuts down, after the last in-flight request. ``checks`` are added
    to ``/readyz``, after the store's. ``dashboard_token``, when set, is asked of the dashboard
    at ``/`` and of the read API (docs/dashboard.md); ingest, metrics and health stay open.
    ``alerts``, an `AlertService` its caller starts and stops, has its active alerts served at
    ``GET /api/v1/alerts`` (behind the dashboard token). ``ingest_key``, when set, is asked of
    ``POST /api/v1/calls`` and ``/api/v1/scores`` as a bearer token, and of the OTLP/HTTP
    receiver's ``POST /v1/traces``, ``/v1/metrics`` and ``/v1/logs``, which ``otlp`` serves (a
    default `OtlpReceiver` when None). A request body that has not
    all arrived ``body_timeout_s`` after the first read of it is answered 408, on every route.
    ``system`` adds event-loop lag and GPU metrics (`SystemMetrics.probe` when None: GPUs when
    NVML is present); its lag task runs while the app does.
    """
    metrics = ServerMetrics(registry=registry)
    system_metrics = system if system is not None else SystemMetrics.probe()
    metrics.expose(system_metrics.registry)
    if runtime.prometheus is not None:
        metrics.expose(runtime.prometheus.registry)
    readiness: dict[str, ReadinessCheck] = {}
    if store is not None:
        readiness["store"] = partial(ops.check_store, store, runtime.recorder)
    if gateway is not None:
        readiness["upstreams"] = gateway.check_upstreams
        metrics.expose(gateway.metrics.registry)
    readiness.update(checks or {})
    context = ServerContext(
        runtime=runtime,
        store=store,
        metrics=metrics,
        queue_limit=queue_limit,
        now=now,
        checks=readiness,
    )

    memory_trim = MemoryTrim()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        system_metrics.start()
        memory_trim.start()
        if gateway is not None:
            await gateway.start()
        try:
            yield
        finally:
            if gateway is not None:
                await gateway.stop()
            await memory_trim.stop()
            await system_metrics.stop()
        if close_on_shutdown:
            # Blocks until the store has every call: off the loop, which is idle by now anyway.
            await anyio.to_thread.run_sync(runtime.recorder.close)

    app = _Server(
        title="aivitals",
        version=version("aivitals"),
        summary="Ingest and query LLM calls; Prometheus metrics; health.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.context = context
    install_error_handlers(app)
    key = IngestKey(ingest_key) if ingest_key else None
    ingest_guard = [Depends(key.require)] if key is not None else []
    app.include_router(ingest.router, dependencies=ingest_guard)
    app.include_router(otlp_router(otlp or OtlpReceiver(), key=key))
    auth = DashboardAuth(dashboard_token) if dashboard_token else None
    guard = [Depends(auth.require)] if auth is not None else []
    app.include_router(read.router, dependencies=guard)
    if alerts is not None:
        app.state.alerts = alerts
        app.include_router(alerts_api.router, dependencies=guard)
    app.include_router(dashboard_router(auth))
    app.include_router(ops.router)
    if gateway is not None:
        routes = gateway.routes
        # In the router too: a wrong method there gets its 405, and the routes are listed.
        app.router.routes.extend(routes)
        app.direct = DirectRoutes(routes)
        # The same server middlewares as every other route, in the same order.
        app.direct_app = MetricsMiddleware(
            BodyLimitMiddleware(
                app.direct,
                max_body_bytes=max_body_bytes,
                exempt=("/v1/",),
                body_timeout_s=body_timeout_s,
            ),
            metrics=metrics,
        )
    # The last added runs first: every request is counted, refused bodies included.
    app.add_middleware(
        BodyLimitMiddleware,
        max_body_bytes=max_body_bytes,
        exempt=("/v1/",),
        body_timeout_s=body_timeout_s,
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app
