"""The read endpoints the dashboard added: /histogram, /quality, /values and /calls/{id}."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aivitals.query import LATENCY_EDGES_MS
from tests.support.server_app import Served, call_json, get_ok, serve_app, served_with

CALLS = [
    call_json(id="a", latency_ms=20.0, feature="search", started_at="2026-11-03T10:10:00Z"),
    call_json(id="b", latency_ms=120.0, feature="search", started_at="2026-11-03T11:10:00Z"),
    call_json(
        id="c",
        model="gpt-4o",
        latency_ms=99_000.0,
        environment="prod",
        trace_id="t1",
        span_id="s1",
        started_at="2026-11-03T11:20:00Z",
    ),
    call_json(
        id="d",
        model="gpt-4o",
        latency_ms=120.0,
        trace_id="t1",
        span_id="s2",
        parent_span_id="s1",
        status="error",
        error_type="timeout",
        started_at="2026-11-03T11:21:00Z",
    ),
]
SCORES = [
    {"call_id": "a", "name": "relevance", "value": 0.5},
    {"call_id": "b", "name": "relevance", "value": 0.9},
    {"call_id": "c", "name": "relevance", "value": 0.7},
    {"call_id": "c", "name": "stars", "value": 4, "max_value": 5, "source": "user"},
]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    with served_with(tmp_path / "aivitals.db", CALLS, SCORES) as served:
        yield served


def bin_of(latency_ms: float) -> int:
    return sum(1 for edge in LATENCY_EDGES_MS if latency_ms >= edge)


def test_histogram_counts_calls_per_latency_bin(served: Served) -> None:
    body = get_ok(served, "/api/v1/histogram", since="24h")
    assert body["edges_ms"] == list(LATENCY_EDGES_MS)
    [series] = body["series"]
    expected = [0] * (len(LATENCY_EDGES_MS) + 1)
    for latency in (20.0, 120.0, 99_000.0, 120.0):
        expected[bin_of(latency)] += 1
    assert series == {"group": {}, "calls": 4, "counts": expected, "skipped_rows": 0}
    # The edges are upper bounds: 120 ms is in [100, 150); 99 s is past the last edge.
    assert expected[bin_of(120.0)] == 2 and expected[-1] == 1


def test_histogram_filters_and_splits_by_a_field(served: Served) -> None:
    body = get_ok(served, "/api/v1/histogram", since="1h", by="model")
    assert [(s["group"], s["calls"]) for s in body["series"]] == [
        ({"model": "gpt-4o"}, 2),
        ({"model": "gpt-4o-mini"}, 1),
    ]
    body = get_ok(served, "/api/v1/histogram", since="24h", where="feature=search")
    assert body["series"][0]["calls"] == 2
    assert get_ok(served, "/api/v1/histogram", since="24h", where="team=none")["series"] == []


def test_quality_is_each_scores_mean_per_bucket_of_its_calls_start(served: Served) -> None:
    body = get_ok(served, "/api/v1/quality", since="24h", step="hour")
    points = [(p["start"], p["name"], p["mean"], p["count"]) for p in body["points"]]
    assert points == [
        ("2026-11-03T10:00:00Z", "relevance", 0.5, 1),
        ("2026-11-03T11:00:00Z", "relevance", pytest.approx(0.8), 2),
        ("2026-11-03T11:00:00Z", "stars", 4.0, 1),
    ]
    body = get_ok(served, "/api/v1/quality", since="24h", where="model=gpt-4o")
    assert [(p["name"], p["mean"]) for p in body["points"]] == [("relevance", 0.7), ("stars", 4.0)]


def test_values_lists_each_filters_values_most_calls_first(served: Served) -> None:
    values = get_ok(served, "/api/v1/values", since="24h")["values"]
    assert list(values) == ["model", "provider", "feature", "team", "user", "environment"]
    assert values["model"] == [
        {"value": "gpt-4o", "calls": 2},
        {"value": "gpt-4o-mini", "calls": 2},
    ]
    assert values["feature"] == [{"value": "search", "calls": 2}]  # absent values left out
    assert values["environment"] == [{"value": "prod", "calls": 1}]
    one = get_ok(served, "/api/v1/values", since="1h", field=["model", "feature"])["values"]
    assert one == {"model": [{"value": "gpt-4o", "calls": 2}, {"value": "gpt-4o-mini", "calls": 1}],
                   "feature": [{"value": "search", "calls": 1}]}  # fmt: skip


def test_one_call_with_its_scores_and_trace(served: Served) -> None:
    body = get_ok(served, "/api/v1/calls/c")
    assert body["call"]["id"] == "c"
    assert body["call"]["cost_usd"] is not None
    assert [(s["name"], s["value"]) for s in body["scores"]] == [("relevance", 0.7), ("stars", 4.0)]
    assert [(c["id"], c["parent_span_id"]) for c in body["trace"]] == [("c", None), ("d", "s1")]
    lone = get_ok(served, "/api/v1/calls/a")
    assert [c["id"] for c in lone["trace"]] == ["a"]


def test_an_unknown_call_is_404(served: Served) -> None:
    reply = served.client.get("/api/v1/calls/nope")
    assert reply.status_code == 404
    assert reply.json() == {"error": "no stored call has this id"}


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/api/v1/histogram", {"by": "colour"}, "query.by"),
        ("/api/v1/histogram", {"since": "soon"}, "query.since"),
        ("/api/v1/quality", {"step": "fortnight"}, "query.step"),
        ("/api/v1/values", {"field": "colour"}, "query.field"),
    ],
)
def test_bad_parameters_are_422_naming_them(
    served: Served, path: str, params: dict[str, Any], field: str
) -> None:
    reply = served.client.get(path, params=params)
    assert reply.status_code == 422, reply.text
    assert [f["field"] for f in reply.json()["fields"]] == [field]


def test_without_a_store_they_are_503() -> None:
    with serve_app(None) as storeless:
        for path in ("/api/v1/histogram", "/api/v1/quality", "/api/v1/values", "/api/v1/calls/a"):
            reply = storeless.client.get(path)
            assert reply.status_code == 503, path
            assert "--db" in reply.json()["error"]
