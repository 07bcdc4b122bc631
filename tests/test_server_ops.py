"""GET /metrics, /healthz, /readyz and /openapi.json."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from aivitals.store.errors import StoreError
from aivitals.store.sql import SqlStore
from tests.support.server_app import Served, call_json, serve_app, served_at


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    with served_at(tmp_path / "aivitals.db") as served:
        yield served


def test_metrics_holds_the_calls_the_server_and_the_process(served: Served) -> None:
    served.client.post("/api/v1/calls", json=call_json())
    served.client.get("/no/such/page")
    reply = served.client.get("/metrics")
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/plain")
    text = reply.text
    assert (
        'aivitals_requests_total{error_type="",model="gpt-4o-mini",operation="chat",'
        'provider="openai",status="ok"} 1.0' in text
    )
    assert (
        'aivitals_http_server_requests_total{method="POST",route="/api/v1/calls",status="202"} 1.0'
        in text
    )
    assert 'route="unmatched",status="404"' in text
    assert "aivitals_http_server_request_duration_seconds_bucket" in text
    assert "process_cpu_seconds_total" in text
    assert "python_info" in text


def test_metrics_speaks_openmetrics_when_asked(served: Served) -> None:
    reply = served.client.get("/metrics", headers={"accept": "application/openmetrics-text"})
    assert reply.headers["content-type"].startswith("application/openmetrics-text")
    assert reply.text.rstrip().endswith("# EOF")
    assert reply.text.count("# EOF") == 1


def test_healthz_and_readyz_with_a_working_store(served: Served) -> None:
    assert served.client.get("/healthz").json() == {"status": "ok"}
    reply = served.client.get("/readyz")
    assert reply.status_code == 200
    # The served fixture's store is an SqlStore, written from the recorder's thread.
    assert reply.json() == {
        "status": "ready",
        "checks": {"store": "ok; written from a thread of this process"},
    }


class UnreachableStore(SqlStore):
    def ping(self) -> None:
        raise StoreError("reaching db.example: connection refused")


def test_readyz_is_503_when_the_store_does_not_answer(tmp_path: Path) -> None:
    real = SqlStore.open(tmp_path / "aivitals.db")
    with serve_app(UnreachableStore(real.engine, name=real.name)) as served:
        reply = served.client.get("/readyz")
        assert reply.status_code == 503
        body = reply.json()
        assert body["status"] == "unready"
        assert body["error"] == "store: reaching db.example: connection refused"


def test_readyz_is_503_when_the_store_file_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "aivitals.db"
    with served_at(path) as served:
        assert served.store is not None
        served.store.engine.dispose()
        for stale in tmp_path.glob("aivitals.db*"):
            stale.unlink()
        path.write_bytes(b"not a database " * 1000)
        reply = served.client.get("/readyz")
        assert reply.status_code == 503
        assert "is not a SQLite database" in reply.json()["error"]


def test_readyz_without_a_store_is_ready() -> None:
    with serve_app(None) as served:
        assert served.client.get("/readyz").json() == {"status": "ready", "checks": {}}


def test_openapi_lists_the_routes_and_request_models(served: Served) -> None:
    document = served.client.get("/openapi.json").json()
    assert {
        "/api/v1/calls",
        "/api/v1/scores",
        "/api/v1/summary",
        "/api/v1/breakdown",
        "/api/v1/timeseries",
        "/metrics",
        "/healthz",
        "/readyz",
    } <= set(document["paths"])
    assert {"CallIn", "CallBatch", "ScoreIn", "ScoreBatch"} <= set(
        document["components"]["schemas"]
    )
    assert "202" in document["paths"]["/api/v1/calls"]["post"]["responses"]


def test_unknown_routes_answer_in_the_error_shape(served: Served) -> None:
    reply = served.client.get("/api/v1/nothing")
    assert (reply.status_code, reply.json()) == (404, {"error": "Not Found"})
    reply = served.client.get("/api/v1/calls", params={"since": "1h"})
    assert reply.status_code == 200
    assert served.client.delete("/api/v1/calls").status_code == 405
