"""``POST /calls`` reads a batch from its JSON text in one step: the same calls, the same refusals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from aivitals.server.ingest import _read_calls
from aivitals.server.models import CallIn, CallsBody
from tests.support.server_app import call_json, served_at

USUAL = TypeAdapter(CallsBody)

VALID: list[dict[str, Any]] = [
    call_json(),
    call_json(latency_ms=812, ttft_ms=12.5, started_at="2026-11-03T11:50:00Z"),
    call_json(started_at=1_793_706_600, tags={"region": "eu", "naïve": "ünïcode"}),
    call_json(user="\U0001f600", server_tool_uses={"web_search": 2}, tokens_estimated=True),
    call_json(status="error", error_type="timeout", http_status=504, cache="miss"),
]


def _usual(body: bytes) -> list[CallIn]:
    """What FastAPI made of a body before: Starlette's ``json.loads``, then validation."""
    batch = USUAL.validate_python(json.loads(body))
    return list(batch.calls)  # type: ignore[union-attr]  # a batch body


def test_a_batch_read_from_its_text_is_the_batch_parsed_then_validated() -> None:
    body = json.dumps({"calls": VALID}).encode()
    read = _read_calls(body)
    assert list(read) == ["calls"]
    assert all(type(call) is CallIn for call in read["calls"])
    validated = USUAL.validate_python(read)  # FastAPI validates what it gets: it passes as it is
    assert list(validated.calls) == _usual(body)  # type: ignore[union-attr]  # a batch body
    # Field by field, as text: a float that became an int, or a time in another zone, differs.
    assert [repr(call) for call in read["calls"]] == [repr(call) for call in _usual(body)]


@pytest.mark.parametrize(
    "body",
    [
        {"calls": [call_json(cost_usd=1e2)]},  # money as a JSON number
        {"calls": [call_json(saved_usd="0.5")]},
        {"calls": [call_json(), call_json(ttft_ms=1e9)]},  # one bad call
        {"calls": [call_json(user="\ud800")]},  # a lone surrogate
        call_json(),  # one call, not a batch
        [1, 2],
    ],
)
def test_any_other_body_is_parsed_as_before(body: Any) -> None:
    text = json.dumps(body).encode()
    assert _read_calls(text) == json.loads(text)


def test_text_that_is_not_json_raises_what_json_loads_raises() -> None:
    with pytest.raises(json.JSONDecodeError):
        _read_calls(b'{"calls": [')


def test_the_api_refuses_and_records_as_before(tmp_path: Path) -> None:
    with served_at(tmp_path / "aivitals.db") as served:
        reply = served.client.post("/api/v1/calls", json={"calls": [*VALID, call_json(id="x")]})
        assert reply.status_code == 202
        refused = served.client.post(
            "/api/v1/calls", json={"calls": [call_json(), call_json(reasoning_tokens=-1)]}
        )
        assert refused.status_code == 422
        assert [field["field"] for field in refused.json()["fields"]] == [
            "calls.1.reasoning_tokens"
        ]
        # UTF-16 is JSON too (RFC 8259 asked for UTF-8; json.loads reads both): as before.
        utf16 = json.dumps({"calls": [call_json(id="y")]}).encode("utf-16")
        reply = served.client.post(
            "/api/v1/calls", content=utf16, headers={"content-type": "application/json"}
        )
        assert reply.status_code == 202
        stored = {row.call.id for row in served.stored()}
    assert {"x", "y"} <= stored
    assert len(stored) == len(VALID) + 2
