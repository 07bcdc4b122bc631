"""GET /api/v1/summary, /breakdown, /timeseries and /calls over a small hand-built set of calls."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.server_app import Served, call_json, get_ok, serve_app, served_with

# Three calls in the last hour before NOW (12:00 UTC), with costs the client sent.
CALLS = [
    call_json(
        id="a", team="search", latency_ms=100.0, cost_usd="0.01", started_at="2026-11-03T11:30:00Z"
    ),
    call_json(
        id="b", team="search", latency_ms=300.0, cost_usd="0.02", started_at="2026-11-03T11:40:00Z"
    ),
    call_json(
        id="c",
        provider="anthropic",
        model="claude-sonnet-4-5",
        team="ads",
        latency_ms=200.0,
        cost_usd="0.05",
        status="error",
        error_type="rate_limit",
        started_at="2026-11-03T11:50:00Z",
    ),
]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    with served_with(tmp_path / "aivitals.db", CALLS) as served:
        yield served


def test_summary_counts_spend_and_latency(served: Served) -> None:
    body = get_ok(served, "/api/v1/summary", since="1h")
    assert body["window"] == {"start": "2026-11-03T11:00:00Z", "end": "2026-11-03T12:00:00Z"}
    summary = body["summary"]
    assert (summary["calls"], summary["ok"], summary["errors"]) == (3, 2, 1)
    assert summary["total_cost_usd"] == 0.08  # a JSON number, exact digits
    assert summary["latency_avg_ms"] == pytest.approx(200.0)
    assert summary["input_tokens"] == 3000


def test_summary_filters_with_repeated_where(served: Served) -> None:
    body = get_ok(served, "/api/v1/summary", since="1h", where=["team=search", "model=gpt-4o-mini"])
    assert body["filters"] == {"model": "gpt-4o-mini", "team": "search"}
    assert (body["summary"]["calls"], body["summary"]["total_cost_usd"]) == (2, 0.03)


def test_breakdown_rows_come_most_expensive_first(served: Served) -> None:
    body = get_ok(served, "/api/v1/breakdown", since="1h", by="model,team")
    assert body["by"] == ["model", "team"]
    rows = [(r["group"], r["calls"], r["total_cost_usd"]) for r in body["rows"]]
    assert rows == [
        ({"model": "claude-sonnet-4-5", "team": "ads"}, 1, 0.05),
        ({"model": "gpt-4o-mini", "team": "search"}, 2, 0.03),
    ]


def test_timeseries_buckets_by_step_and_group(served: Served) -> None:
    body = get_ok(served, "/api/v1/timeseries", since="2h", step="hour", by="team")
    points = {(p["start"], p["group"]["team"]): (p["calls"], p["cost_usd"]) for p in body["points"]}
    assert points == {
        ("2026-11-03T11:00:00Z", "search"): (2, 0.03),
        ("2026-11-03T11:00:00Z", "ads"): (1, 0.05),
    }


def test_calls_page_newest_first(served: Served) -> None:
    body = get_ok(served, "/api/v1/calls", since="1h", limit=2)
    assert [c["call"]["id"] for c in body["calls"]] == ["c", "b"]
    assert body["calls"][0]["call"]["cost_usd"] == 0.05
    assert body["calls"][0]["scores"] == []
    body = get_ok(served, "/api/v1/calls", since="1h", limit=2, offset=2)
    assert [c["call"]["id"] for c in body["calls"]] == ["a"]


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/api/v1/summary", {"since": "yesterday"}, "query.since"),
        ("/api/v1/summary", {"where": "colour=red"}, "query.where"),
        ("/api/v1/breakdown", {"by": "colour"}, "query.by"),
        ("/api/v1/timeseries", {"step": "fortnight"}, "query.step"),
        ("/api/v1/calls", {"limit": 0}, "query.limit"),
    ],
)
def test_bad_parameters_are_422_naming_them(
    served: Served, path: str, params: dict[str, Any], field: str
) -> None:
    reply = served.client.get(path, params=params)
    assert reply.status_code == 422
    body = reply.json()
    assert [f["field"] for f in body["fields"]] == [field]
    assert body["error"]


def test_without_a_store_reads_are_503_saying_how() -> None:
    with serve_app(None) as storeless:
        for path in ("/api/v1/summary", "/api/v1/breakdown", "/api/v1/timeseries", "/api/v1/calls"):
            reply = storeless.client.get(path)
            assert reply.status_code == 503
            assert "--db" in reply.json()["error"]
        # Ingest still works: metrics only.
        reply = storeless.client.post("/api/v1/calls", json=call_json())
        assert reply.status_code == 202
