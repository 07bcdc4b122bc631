"""GET /api/v1/drift: the same drift as `Queries.drift`, and 422s naming what is wrong."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import msgspec
import pytest

from aivitals.query import Filters, Queries, Window
from aivitals.store.baselines import pin
from aivitals.store.rows import epoch_ms
from aivitals.store.sql import SqlStore
from tests.support.drift_history import Change, history
from tests.support.server_app import NOW, Served, get_ok, serve_app


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    store = SqlStore.open(tmp_path_factory.mktemp("drift-api") / "aivitals.db")
    step = Change(NOW - timedelta(hours=1), model="m-a", latency_factor=1.5)
    history(store, now=NOW, days=3, seed=21, changes=(step,))
    pin(store.engine, "day-one", epoch_ms(NOW - timedelta(days=3)),
        epoch_ms(NOW - timedelta(days=2)), now_ms=0)  # fmt: skip
    with serve_app(store) as served:
        yield served


def test_the_api_answers_the_queries_drift(served: Served) -> None:
    body = get_ok(served, "/api/v1/drift", window="1h", baseline="2d", by="model")
    assert body["window"] == {"start": "2026-11-03T11:00:00Z", "end": "2026-11-03T12:00:00Z"}
    assert served.store is not None
    hour = Window(NOW - timedelta(hours=1), NOW)
    expected = Queries(served.store.engine).drift(hour, Filters(), ("model",), baseline="2d")
    assert body["drift"] == msgspec.json.decode(msgspec.json.encode(expected))
    drifted = {(r["group"]["model"], r["signal"]) for r in body["drift"]["results"]
               if r["verdict"] in ("moderate", "significant")}  # fmt: skip
    assert ("m-a", "latency_ms") in drifted
    assert ("m-b", "latency_ms") not in drifted


def test_a_pinned_baseline_by_name(served: Served) -> None:
    body = get_ok(served, "/api/v1/drift", pinned="day-one", signal="latency_ms")
    assert body["drift"]["baseline"] == "pinned day-one"
    assert body["drift"]["baseline_windows"] == [
        {"start": "2026-10-31T12:00:00Z", "end": "2026-11-01T12:00:00Z"}
    ]
    assert [r["signal"] for r in body["drift"]["results"]] == ["latency_ms"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"window": "yesterday"}, "query.window"),
        ({"window": "3d"}, "query.window"),
        ({"baseline": "a week"}, "query.baseline"),
        ({"baseline": "0d"}, "query.baseline"),
        ({"pinned": "nope"}, "query.pinned"),
        ({"by": "colour"}, "query.by"),
        ({"signal": "colour"}, "query.signal"),
        ({"where": "colour=red"}, "query.where"),
        ({"min_samples": 1}, "query.min_samples"),
        ({"min_samples": "many"}, "query.min_samples"),
    ],
)
def test_bad_parameters_are_422_naming_them(
    served: Served, params: dict[str, Any], field: str
) -> None:
    reply = served.client.get("/api/v1/drift", params=params)
    assert reply.status_code == 422, reply.text
    body = reply.json()
    assert [f["field"] for f in body["fields"]] == [field]
    assert body["error"]


def test_the_route_is_in_the_openapi_document(served: Served) -> None:
    operation = get_ok(served, "/openapi.json")["paths"]["/api/v1/drift"]["get"]
    names = {p["name"] for p in operation["parameters"]}
    assert names == {"window", "baseline", "pinned", "by", "where", "signal", "min_samples"}
    assert "422" in operation["responses"]


def test_without_a_store_it_is_503_saying_how() -> None:
    with serve_app(None) as storeless:
        reply = storeless.client.get("/api/v1/drift")
        assert reply.status_code == 503
        assert "--db" in reply.json()["error"]
