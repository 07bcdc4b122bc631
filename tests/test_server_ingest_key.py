"""``--ingest-key``: posting calls and scores needs the key; reads, metrics and health do not."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from aivitals.model import Call
from aivitals.recorder import Recorder
from aivitals.sinks.http import HttpExporter
from aivitals.store.sql import SqlStore

from .support.server_app import Served, call_json, serve_app
from .support.servers import serve_in_thread

KEY = "ingest-key-0123456789"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    with serve_app(SqlStore.open(tmp_path / "a.db"), ingest_key=KEY) as served:
        yield served


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-key-0123456789", KEY])
def test_ingest_without_the_key_is_a_401_and_stores_nothing(
    served: Served, authorization: str | None
) -> None:
    headers = {"authorization": authorization} if authorization else {}
    reply = served.client.post("/api/v1/calls", json=call_json(), headers=headers)
    assert reply.status_code == 401
    assert reply.headers["www-authenticate"] == "Bearer"
    assert "ingest key" in reply.json()["error"]
    scores = served.client.post(
        "/api/v1/scores", json={"call_id": "x", "name": "n", "value": 1.0}, headers=headers
    )
    assert scores.status_code == 401
    assert served.stored() == []


def test_ingest_with_the_key_is_stored_and_reads_stay_open(served: Served) -> None:
    reply = served.client.post(
        "/api/v1/calls", json=call_json(), headers={"authorization": f"Bearer {KEY}"}
    )
    assert reply.status_code == 202
    assert len(served.stored()) == 1
    assert served.client.get("/api/v1/summary", params={"since": "7d"}).status_code == 200
    assert served.client.get("/metrics").status_code == 200
    assert served.client.get("/healthz").status_code == 200


def test_the_sdk_exporter_delivers_with_its_api_key(tmp_path: Path) -> None:
    with (
        serve_app(SqlStore.open(tmp_path / "a.db"), ingest_key=KEY) as served,
        serve_in_thread(served.client.app) as origin,
    ):
        exporter = HttpExporter(origin, api_key=KEY, spool_dir=tmp_path / "spool")
        recorder = Recorder(batch_sinks=[exporter], flush_interval_s=0.05)
        started = datetime(2026, 11, 3, 11, 55, tzinfo=UTC)  # in the stored() window
        calls = [
            Call(provider="openai", model="gpt-4o-mini", latency_ms=10.0 + i, started_at=started)
            for i in range(5)
        ]
        for call in calls:
            recorder.record(call)
        assert recorder.flush(timeout_s=30)
        recorder.close()
        assert sorted(s.call.id for s in served.stored()) == sorted(c.id for c in calls)
