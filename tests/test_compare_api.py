"""GET /api/v1/compare: the same comparison as `aivitals compare`, and 422s naming what is wrong."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
import sqlalchemy as sa
from scipy import stats

from aivitals.query import Queries, parse_since
from aivitals.store.sql import SqlStore
from tests.support.server_app import NOW, Served, get_ok, serve_app
from tests.test_compare import write_versions


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    store = SqlStore.open(tmp_path_factory.mktemp("compare-api") / "aivitals.db")
    write_versions(store, now=NOW)
    with serve_app(store) as served:
        yield served


def test_the_api_answers_the_queries_comparison(served: Served) -> None:
    body = get_ok(served, "/api/v1/compare", by="prompt_version", a="v1", b="v2", since="7d")
    assert body["window"] == {"start": "2026-10-27T12:00:00Z", "end": "2026-11-03T12:00:00Z"}
    assert served.store is not None
    expected = Queries(served.store.engine).compare(parse_since("7d", now=NOW), a="v1", b="v2")
    assert body["comparison"] == msgspec.json.decode(msgspec.json.encode(expected))
    assert {"latency_p50_ms", "error_rate", "refusal_rate"} <= set(
        body["comparison"]["regressions"]
    )
    # And against scipy on the latencies read by plain SQL.
    with served.store.engine.connect() as connection:

        def latencies(version: str) -> np.ndarray[Any, Any]:
            found = connection.execute(
                sa.text("SELECT latency_ms FROM calls WHERE prompt_version = :v"), {"v": version}
            ).scalars()
            return np.array(list(found), dtype=float)

        a, b = latencies("v1"), latencies("v2")
    p50 = body["comparison"]["measures"][0]
    assert p50["name"] == "latency_p50_ms"
    assert p50["p_value"] == pytest.approx(stats.mannwhitneyu(b, a).pvalue, rel=1e-12)


def test_without_a_and_b_the_two_most_frequent(served: Served) -> None:
    body = get_ok(served, "/api/v1/compare", since="7d")
    found = body["comparison"]
    assert found["chosen"] is True
    assert (found["a"]["value"], found["b"]["value"]) == ("v1", "v3")


def test_filters_apply_to_both_sides(served: Served) -> None:
    body = get_ok(served, "/api/v1/compare", a="v1", b="v2", since="7d", where="status=error")
    assert body["filters"] == {"status": "error"}
    measures = {m["name"]: m for m in body["comparison"]["measures"]}
    assert (measures["error_rate"]["a"], measures["error_rate"]["b"]) == (1.0, 1.0)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"by": "colour"}, "query.by"),
        ({"by": "model,feature"}, "query.by"),
        ({"by": "environment"}, "query.by"),
        ({"a": "v1"}, "query.b"),
        ({"b": "v2"}, "query.a"),
        ({"a": "v1", "b": "v1"}, "query.b"),
        ({"a": "v\x001", "b": "v2"}, "query.a"),
        ({"by": "status", "a": "ok", "b": "lost"}, "query.b"),
        ({"a": "v1", "b": "v2", "where": "prompt_version=v1"}, "query.where"),
        ({"a": "v1", "b": "v2", "where": "colour=red"}, "query.where"),
        ({"since": "yesterday"}, "query.since"),
        ({"min_samples": 1}, "query.min_samples"),
        ({"min_samples": "many"}, "query.min_samples"),
        ({"min_samples": 5001}, "query.min_samples"),
    ],
)
def test_bad_parameters_are_422_naming_them(
    served: Served, params: dict[str, Any], field: str
) -> None:
    reply = served.client.get("/api/v1/compare", params={"since": "7d", **params})
    assert reply.status_code == 422, reply.text
    body = reply.json()
    assert [f["field"] for f in body["fields"]] == [field]
    assert body["error"]


def test_too_few_calls_are_not_enough_data_not_an_error(served: Served) -> None:
    body = get_ok(served, "/api/v1/compare", a="v1", b="v4", since="7d")
    verdicts = {m["verdict"] for m in body["comparison"]["measures"]}
    assert verdicts == {"not enough data"}


def test_the_route_is_in_the_openapi_document(served: Served) -> None:
    document = get_ok(served, "/openapi.json")
    operation = document["paths"]["/api/v1/compare"]["get"]
    names = {p["name"] for p in operation["parameters"]}
    assert names == {"since", "where", "by", "a", "b", "min_samples"}
    assert "422" in operation["responses"]


def test_without_a_store_it_is_503_saying_how(tmp_path: Path) -> None:
    with serve_app(None) as storeless:
        reply = storeless.client.get("/api/v1/compare")
        assert reply.status_code == 503
        assert "--db" in reply.json()["error"]
