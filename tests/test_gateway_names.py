"""The server's metrics name the gateway's requests: their route, and the calls in flight.

Every gateway request was counted as ``route="unmatched"`` in
``aivitals_http_server_requests_total`` (its routes are Starlette's, which do not put
themselves in the request's scope as FastAPI's do), and ``aivitals_requests_in_flight`` was
never set for a gateway call. Served for real (uvicorn, the official openai client, the mock
upstream), scraped from ``/metrics`` mid-stream.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from aivitals.gateway.proxy import Gateway
from aivitals.gateway.upstreams import Upstream, Upstreams
from aivitals.mock_llm import MockConfig, MockServer
from aivitals.server import create_app
from aivitals.store.sql import SqlStore
from tests.support.server_app import build_runtime
from tests.support.servers import serve_in_thread


def samples(origin: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    scraped = httpx.get(f"{origin}/metrics").text
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(scraped)
        for sample in family.samples
        if sample.name == name
    }


@pytest.fixture
def origin(tmp_path: Path) -> Iterator[str]:
    with MockServer(MockConfig(seed=3)) as upstream:
        store = SqlStore.open(tmp_path / "a.db")
        runtime = build_runtime(store)
        upstreams = Upstreams(
            [Upstream(name="mock", base_url=upstream.base_url, models=("gpt-4o",), timeout_s=10)]
        )
        gateway = Gateway(recorder=runtime.recorder, upstreams=upstreams)
        app = create_app(runtime=runtime, store=None, gateway=gateway, close_on_shutdown=True)
        with serve_in_thread(app) as served:
            yield served
        store.close()


def test_gateway_requests_are_counted_by_their_route(origin: str) -> None:
    with openai.OpenAI(base_url=f"{origin}/v1", api_key="sk-x", max_retries=0) as client:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
        client.models.list()
    counted = samples(origin, "aivitals_http_server_requests_total")
    routes = {dict(labels)["route"] for labels in counted}
    assert (
        counted[(("method", "POST"), ("route", "/v1/chat/completions"), ("status", "200"))] == 1.0
    )
    assert counted[(("method", "GET"), ("route", "/v1/models"), ("status", "200"))] == 1.0
    assert "unmatched" not in routes


def test_a_gateway_call_is_in_flight_until_it_ends(origin: str) -> None:
    key = (("model", "gpt-4o"), ("provider", "openai"))
    with openai.OpenAI(base_url=f"{origin}/v1", api_key="sk-x", max_retries=0) as client:
        with client.chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            extra_headers={"X-Mock-Latency-Ms": "1500", "X-Mock-Ttft-Ms": "20"},
        ) as stream:
            next(iter(stream))
            assert samples(origin, "aivitals_requests_in_flight").get(key) == 1.0
            for _ in stream:
                pass
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    # The stream is recorded just after its last byte reached the client.
    deadline = time.monotonic() + 5
    while samples(origin, "aivitals_requests_in_flight").get(key) != 0.0:
        assert time.monotonic() < deadline, samples(origin, "aivitals_requests_in_flight")
        time.sleep(0.05)
