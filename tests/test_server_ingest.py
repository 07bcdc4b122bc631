"""POST /api/v1/calls and /api/v1/scores: what lands in the store, and what is refused whole."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from aivitals.model import Call
from aivitals.store.sql import SqlStore
from tests.support.server_app import Served, call_json, serve_app, served_at


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    with served_at(tmp_path / "aivitals.db") as served:
        yield served


def test_one_call_lands_in_the_store_priced(served: Served) -> None:
    reply = served.client.post("/api/v1/calls", json=call_json(team="search", tags={"k": "v"}))
    assert reply.status_code == 202
    body = reply.json()
    assert body["accepted"] == 1
    [stored] = served.stored()
    assert stored.call.id == body["ids"][0]
    assert stored.call.team == "search"
    assert stored.call.tags == {"k": "v"}
    assert stored.call.started_at == datetime(2026, 11, 3, 11, 50, tzinfo=UTC)
    assert stored.call.cost_usd == Decimal("0.00021")  # priced by the recorder


def test_a_call_the_sdk_encoded_posts_unchanged(served: Served) -> None:
    call = Call(
        provider="openai",
        model="gpt-4o",
        latency_ms=900.0,
        ttft_ms=120.0,
        input_tokens=2000,
        cached_input_tokens=1024,
        output_tokens=50,
        cost_usd=Decimal("0.0123"),
        price_source="override",
        started_at=datetime(2026, 11, 3, 11, 0, tzinfo=UTC),
        feature="chat",
    )
    reply = served.client.post(
        "/api/v1/calls",
        content=msgspec.json.encode(call),
        headers={"content-type": "application/json"},
    )
    assert reply.status_code == 202, reply.text
    [stored] = served.stored()
    assert stored.call == call


def test_a_batch_lands_whole_and_ids_keep_request_order(served: Served) -> None:
    calls = [call_json(id=f"0192-{i:04d}", latency_ms=100.0 + i) for i in range(25)]
    reply = served.client.post("/api/v1/calls", json={"calls": calls})
    assert reply.status_code == 202
    assert reply.json() == {"accepted": 25, "ids": [f"0192-{i:04d}" for i in range(25)]}
    assert sorted(s.call.latency_ms for s in served.stored()) == [100.0 + i for i in range(25)]


def test_a_batch_with_bad_calls_is_refused_whole_naming_each(served: Served) -> None:
    calls = [call_json() for _ in range(5)]
    del calls[3]["latency_ms"]
    reply = served.client.post("/api/v1/calls", json={"calls": calls})
    assert reply.status_code == 422
    assert {f["field"] for f in reply.json()["fields"]} == {"calls.3.latency_ms"}
    # Types pass, values do not go together: the 422 comes from Call itself, still whole.
    calls = [call_json() for _ in range(5)]
    calls[2]["cached_input_tokens"] = 5000
    calls[4]["latency_ms"] = -1
    reply = served.client.post("/api/v1/calls", json={"calls": calls})
    assert reply.status_code == 422
    fields = {f["field"]: f["message"] for f in reply.json()["fields"]}
    assert set(fields) == {"calls.4.latency_ms"}
    calls[4]["latency_ms"] = 10
    reply = served.client.post("/api/v1/calls", json={"calls": calls})
    assert reply.status_code == 422
    [bad] = reply.json()["fields"]
    assert bad["field"] == "calls.2.cached_input_tokens"
    assert "exceed input_tokens" in bad["message"]
    assert "nothing was recorded" in reply.json()["error"]
    assert served.stored() == []
    assert served.runtime.recorder.stats.accepted_calls == 0


def test_a_single_bad_call_names_its_fields_without_a_prefix(served: Served) -> None:
    reply = served.client.post(
        "/api/v1/calls",
        json=call_json(status="error", input_tokens="12", colour="red", started_at="yesterday"),
    )
    assert reply.status_code == 422
    fields = {f["field"] for f in reply.json()["fields"]}
    assert fields == {"input_tokens", "colour", "started_at"}
    reply = served.client.post("/api/v1/calls", json=call_json(status="error"))
    assert [f["field"] for f in reply.json()["fields"]] == ["error_type"]


def test_a_batch_over_the_limit_is_refused(served: Served) -> None:
    reply = served.client.post("/api/v1/calls", json={"calls": [call_json()] * 1001})
    assert reply.status_code == 422
    assert [f["field"] for f in reply.json()["fields"]] == ["calls"]


def test_malformed_json_is_a_400_with_a_message(served: Served) -> None:
    reply = served.client.post(
        "/api/v1/calls",
        content=b'{"provider": "openai",',
        headers={"content-type": "application/json"},
    )
    assert reply.status_code == 400
    assert reply.json()["error"].startswith("the body is not valid JSON")
    reply = served.client.post("/api/v1/calls", json=[1, 2])
    assert reply.status_code == 422


def test_non_finite_numbers_are_refused(served: Served) -> None:
    reply = served.client.post(
        "/api/v1/calls",
        content=b'{"provider": "openai", "model": "m", "latency_ms": NaN}',
        headers={"content-type": "application/json"},
    )
    assert reply.status_code == 422
    assert [f["field"] for f in reply.json()["fields"]] == ["latency_ms"]


def test_an_oversize_body_is_a_413_naming_the_limit(tmp_path: Path) -> None:
    with serve_app(SqlStore.open(tmp_path / "s.db"), max_body_bytes=2000) as served_:
        big = {"calls": [call_json() for _ in range(30)]}
        reply = served_.client.post("/api/v1/calls", json=big)
        assert reply.status_code == 413
        assert reply.json()["error"] == (
            "the request body is over the 2,000-byte limit; send smaller batches"
        )

        encoded = msgspec.json.encode(big)

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
            yield encoded

        reply = served_.client.post(
            "/api/v1/calls", content=chunks(), headers={"content-type": "application/json"}
        )
        assert reply.status_code == 413
        assert served_.stored() == []


def test_an_unknown_model_is_recorded_with_cost_null(served: Served) -> None:
    reply = served.client.post("/api/v1/calls", json=call_json(model="no-such-model-7b"))
    assert reply.status_code == 202
    [stored] = served.stored()
    assert stored.call.cost_usd is None
    listed = served.client.get("/api/v1/calls", params={"since": "1h"}).json()
    assert listed["calls"][0]["call"]["cost_usd"] is None


def test_a_cost_sent_by_the_client_is_kept(served: Served) -> None:
    served.client.post("/api/v1/calls", json=call_json(cost_usd="0.5"))
    [stored] = served.stored()
    assert (stored.call.cost_usd, stored.call.price_source) == (Decimal("0.5"), "client")


def test_scores_ingest_one_and_batch(served: Served) -> None:
    call_id = served.client.post("/api/v1/calls", json=call_json()).json()["ids"][0]
    one = served.client.post(
        "/api/v1/scores", json={"call_id": call_id, "name": "relevance", "value": 0.8}
    )
    assert one.status_code == 202
    batch = served.client.post(
        "/api/v1/scores",
        json={
            "scores": [
                {"call_id": call_id, "name": "stars", "value": 4, "max_value": 5, "source": "user"},
                {"call_id": call_id, "name": "toxicity", "value": 0.01, "comment": "fine"},
            ]
        },
    )
    assert batch.json()["accepted"] == 2
    [stored] = served.stored()
    assert {(s.name, s.value, s.source) for s in stored.scores} == {
        ("relevance", 0.8, "api"),
        ("stars", 4.0, "user"),
        ("toxicity", 0.01, "api"),
    }


def test_a_score_outside_its_range_is_refused_whole(served: Served) -> None:
    reply = served.client.post(
        "/api/v1/scores",
        json={
            "scores": [
                {"call_id": "c1", "name": "relevance", "value": 0.5},
                {"call_id": "c1", "name": "relevance", "value": 1.5},
            ]
        },
    )
    assert reply.status_code == 422
    [bad] = reply.json()["fields"]
    assert bad["field"] == "scores.1.value"
    assert "outside the declared range" in bad["message"]
    assert served.runtime.recorder.stats.accepted_scores == 0


def test_a_full_recorder_queue_refuses_with_503_before_dropping(tmp_path: Path) -> None:
    with serve_app(SqlStore.open(tmp_path / "s.db"), queue_limit=10) as served_:
        reply = served_.client.post("/api/v1/calls", json={"calls": [call_json()] * 11})
        assert reply.status_code == 503
        assert reply.headers["retry-after"] == "1"
        assert served_.runtime.recorder.stats.accepted_calls == 0
