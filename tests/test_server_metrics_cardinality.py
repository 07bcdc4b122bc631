"""The server's and the gateway's own metrics keep bounded label sets, and one overflow family.

Routes are labelled by template and unknown methods as ``other`` already; what still grew without
end: every HTTP status an app or a proxied upstream answers (599, 299, ...), any route string
handed to `ServerMetrics.observe`, any refusal reason. And the label-overflow counts of the sink,
the gateway and the server must reach one scrape as one family, or Prometheus rejects it.
"""

from __future__ import annotations

from collections import Counter

import httpx
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from aivitals.cardinality import OTHER, LabelLimits
from aivitals.gateway.metrics import REASONS, GatewayMetrics
from aivitals.server.metrics import MetricsMiddleware, ServerMetrics
from aivitals.sinks.prometheus import PrometheusSink

from .support.helpers import make_call
from .support.server_app import serve_app
from .support.servers import serve_in_thread

DISTINCT = 10_000


def samples(registry: CollectorRegistry, name: str) -> list[dict[str, str]]:
    exposition = generate_latest(registry).decode()
    return [
        one.labels
        for family in text_string_to_metric_families(exposition)
        for one in family.samples
        if one.name == name
    ]


def test_distinct_routes_and_statuses_are_capped() -> None:
    metrics = ServerMetrics(max_series=100)
    for i in range(DISTINCT):
        metrics.observe(method="GET", route=f"/raw/{i}", status=200 + i % 400, seconds=0.01)
    requests = samples(metrics.registry, "aivitals_http_server_requests_total")
    assert len(requests) <= 100 + 1
    assert len(
        samples(metrics.registry, "aivitals_http_server_request_duration_seconds_count")
    ) <= (100 + 1)
    total = metrics.registry.get_sample_value
    counted = sum(total("aivitals_http_server_requests_total", labels) or 0 for labels in requests)
    assert counted == DISTINCT
    folded = total(
        "aivitals_label_overflow_total",
        {"metric": "aivitals_http_server_requests_total", "label": "route"},
    )
    assert folded is not None and folded >= DISTINCT - 100


def test_a_status_that_http_does_not_name_is_kept_by_its_class() -> None:
    metrics = ServerMetrics()
    for status in range(100, 600):
        metrics.observe(method="GET", route="/v1/chat/completions", status=status, seconds=0.01)
    statuses = Counter(
        labels["status"]
        for labels in samples(metrics.registry, "aivitals_http_server_requests_total")
    )
    assert {"200", "404", "429", "503"} <= set(statuses)
    assert {"2xx", "5xx"} <= set(statuses) and "599" not in statuses
    # The ~60 codes HTTP names, plus one class each for the rest: not 500.
    assert len(statuses) < 80


def test_unknown_methods_routes_and_statuses_over_a_real_socket() -> None:
    async def answer(request: Request) -> PlainTextResponse:
        return PlainTextResponse("", status_code=int(request.path_params["status"]))

    metrics = ServerMetrics()
    app = MetricsMiddleware(
        Starlette(routes=[Route("/status/{status:int}", answer, methods=["GET", "POST"])]),
        metrics,
    )
    # Methods uvicorn's parser lets through to the app (it answers 400 to made-up tokens itself).
    methods = ("PROPFIND", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "PURGE", "REPORT", "SEARCH")
    with serve_in_thread(app) as origin, httpx.Client(base_url=origin) as client:
        for i in range(300):
            client.request(methods[i % len(methods)], f"/status/{200 + i}")
            client.get(f"/scan/{i}")
            client.get(f"/status/{200 + i}")
    requests = samples(metrics.registry, "aivitals_http_server_requests_total")
    assert {labels["method"] for labels in requests} == {"GET", "other"}
    assert {labels["route"] for labels in requests} == {"/status/{status:int}", "unmatched"}
    assert len(requests) < 80
    get = metrics.registry.get_sample_value
    assert sum(get("aivitals_http_server_requests_total", labels) or 0 for labels in requests) == (
        900
    )


def test_refusal_reasons_are_capped() -> None:
    metrics = GatewayMetrics()
    for i in range(DISTINCT):
        metrics.refused(f"reason-{i}")
    reasons = {
        labels["reason"] for labels in samples(metrics.registry, "aivitals_gateway_refusals_total")
    }
    assert set(REASONS) <= reasons and OTHER in reasons
    assert len(reasons) <= 32 + 1
    assert metrics.registry.get_sample_value(
        "aivitals_label_overflow_total",
        {"metric": "aivitals_gateway_refusals_total", "label": "reason"},
    ) == DISTINCT - (32 - len(REASONS))


def overflow_families(exposition: str) -> list[dict[tuple[str, str], float]]:
    return [
        {
            (one.labels["metric"], one.labels["label"]): one.value
            for one in family.samples
            if one.name == "aivitals_label_overflow_total"
        }
        for family in text_string_to_metric_families(exposition)
        if family.name == "aivitals_label_overflow"
    ]


def test_one_scrape_carries_one_overflow_family_from_every_part() -> None:
    sink = PrometheusSink(limits=LabelLimits(models=200))
    for i in range(300):
        sink.on_call(make_call(model=f"m-{i}"))
    gateway = GatewayMetrics()
    gateway.refused("reason-new")
    metrics = ServerMetrics()
    metrics.expose(sink.registry)
    metrics.expose(gateway.registry)
    exposition = generate_latest(metrics.registry).decode()
    assert exposition.count("# TYPE aivitals_label_overflow_total counter") == 1
    (folded,) = overflow_families(exposition)
    assert folded[("aivitals_requests_total", "model")] == 100
    assert folded[("aivitals_gateway_refusals_total", "reason")] == 0
    assert folded[("aivitals_http_server_requests_total", "route")] == 0


def test_served_metrics_hold_the_folds_once() -> None:
    with serve_app(None) as served:
        for i in range(300):
            served.runtime.recorder.record(make_call(model=f"m-{i}"))
        reply = served.client.get("/metrics")
    assert reply.status_code == 200
    (folded,) = overflow_families(reply.text)
    assert folded[("aivitals_requests_total", "model")] == 100
    assert ("aivitals_http_server_requests_total", "route") in folded
