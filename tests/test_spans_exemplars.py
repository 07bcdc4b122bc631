"""Exemplars: the latency and TTFT buckets on ``/metrics`` carry a recent call's trace id, in
the OpenMetrics format only, and a real Prometheus with exemplar storage returns it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from aivitals.dashboards.grafana import build_dashboard
from aivitals.model import Call
from aivitals.sinks.prometheus import PrometheusSink

from .support.gateway_processes import ServeProcess
from .support.realservers import Prometheus, need, poll

SLOW_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
FAST_TRACE = "0af7651916cd43dd8448eb211c80319c"


class ExemplarPrometheus(Prometheus):
    """Prometheus that keeps the exemplars it scrapes (a feature flag in 2.x)."""

    def command(self) -> list[str]:
        return [*super().command(), "--enable-feature=exemplar-storage"]


def call_json(**fields: Any) -> dict[str, Any]:
    return {"provider": "openai", "model": "gpt-4o-mini", "input_tokens": 10, **fields}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    with ServeProcess(tmp_path_factory.mktemp("serve")) as serve:
        reply = serve.client.post(
            serve.url + "/api/v1/calls",
            json={
                "calls": [
                    call_json(latency_ms=3000.0, ttft_ms=300.0, trace_id=SLOW_TRACE),
                    call_json(latency_ms=15.0, trace_id=FAST_TRACE),
                    call_json(latency_ms=15.0),  # no trace: the bucket keeps the traced one
                ]
            },
        )
        assert reply.status_code == 202, reply.text
        yield serve


def scrape(serve: ServeProcess, accept: str | None) -> httpx.Response:
    headers = {"accept": accept} if accept else {}

    def counted() -> httpx.Response | None:
        reply = serve.client.get(serve.url + "/metrics", headers=headers)
        return reply if "aivitals_request_duration_seconds_bucket" in reply.text else None

    answer: httpx.Response = poll("the calls on /metrics", counted)
    return answer


def bucket_lines(text: str, name: str) -> dict[str, str]:
    """The bucket lines of ``name`` by their ``le``."""
    found = {}
    for line in text.splitlines():
        if line.startswith(f"{name}_bucket{{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            found[le] = line
    return found


def test_openmetrics_buckets_carry_the_trace_id_of_the_call_that_fell_in_them(
    served: ServeProcess,
) -> None:
    reply = scrape(served, "application/openmetrics-text; version=1.0.0")
    assert reply.headers["content-type"].startswith("application/openmetrics-text; version=1.0.0")
    duration = bucket_lines(reply.text, "aivitals_request_duration_seconds")
    # 3 s falls in (2.56, 5.12]; 15 ms in (0.01, 0.02]: the bounds of docs/metrics.md.
    assert f'# {{trace_id="{SLOW_TRACE}"}} 3.0 ' in duration["5.12"]
    assert f'# {{trace_id="{FAST_TRACE}"}} 0.015 ' in duration["0.02"]
    assert "#" not in duration["0.01"]
    first = bucket_lines(reply.text, "aivitals_time_to_first_token_seconds")
    assert f'# {{trace_id="{SLOW_TRACE}"}} 0.3 ' in first["0.32"]
    assert "_created" not in reply.text
    assert reply.text.rstrip().endswith("# EOF")


def test_the_classic_text_format_has_no_exemplars(served: ServeProcess) -> None:
    for accept in (None, "text/plain"):
        reply = scrape(served, accept)
        assert reply.headers["content-type"].startswith("text/plain")
        assert SLOW_TRACE not in reply.text
        assert "_created" not in reply.text
        families = {f.name for f in text_string_to_metric_families(reply.text)}
        assert "aivitals_request_duration_seconds" in families


def test_a_real_prometheus_keeps_the_exemplars(served: ServeProcess, tmp_path: Path) -> None:
    binary = need("prometheus")
    started = time.time()
    with ExemplarPrometheus(
        binary, tmp_path, targets=[served.url.removeprefix("http://")]
    ) as prometheus:
        prometheus.wait_until_scraped()

        def kept() -> set[str] | None:
            data = prometheus.api(
                "query_exemplars",
                query="aivitals_request_duration_seconds_bucket",
                start=f"{started - 60:.3f}",
                end=f"{time.time() + 60:.3f}",
            )
            ids = {e["labels"]["trace_id"] for series in data for e in series["exemplars"]}
            return ids if {SLOW_TRACE, FAST_TRACE} <= ids else None

        assert poll("the exemplars in Prometheus", kept) == {SLOW_TRACE, FAST_TRACE}


def test_a_bucket_keeps_the_latest_traced_call_and_operations_merge_by_time() -> None:
    sink = PrometheusSink()
    for trace_id, operation in (("a" * 32, "chat"), ("b" * 32, "text_completion")):
        sink.on_call(
            Call(
                provider="openai",
                model="gpt-4o",
                operation=operation,  # type: ignore[arg-type]  # both are Operations
                latency_ms=1000.0,
                ttft_ms=100.0,
                trace_id=trace_id,
            )
        )
    families = {family.name: family for family in sink.registry.collect()}
    [ttft_bucket] = [
        s
        for s in families["aivitals_time_to_first_token_seconds"].samples
        if s.labels.get("le") == "0.16"
    ]
    # TTFT is labelled by model only: the two operations merge, the later call's trace wins.
    assert ttft_bucket.exemplar is not None
    assert ttft_bucket.exemplar.labels == {"trace_id": "b" * 32}


def test_the_grafana_latency_panels_show_the_exemplars() -> None:
    dashboard = build_dashboard()
    panels = {
        panel["title"]: panel
        for row in dashboard["panels"]
        for panel in [row, *row.get("panels", [])]
        if "title" in panel
    }
    for title, legend in (
        ("End-to-end latency: p50, p95, p99", "p99"),
        ("Time to first token: p50, p95", "p95"),
    ):
        marked = [t["legendFormat"] for t in panels[title]["targets"] if t.get("exemplar")]
        assert marked == [legend], title  # once per panel: each bucket's exemplar is one dot
