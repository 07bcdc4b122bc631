"""GET /api/v1/cache: the cache impact and guardrail actions over HTTP, checked against figures
worked out from the posted bodies (tests/test_cache_impact.py's `expected`)."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from aivitals.store.sql import SqlStore
from tests.support.server_app import Served, serve_app
from tests.test_cache_impact import LEVEL_NAMES, cache_history, expected, post

TOKEN = "t0ken-for-cache"


@pytest.fixture
def served(store_target: str) -> Iterator[Served]:
    with serve_app(SqlStore.open(store_target)) as served:
        yield served


def test_the_route_answers_every_level_and_the_guardrails(served: Served) -> None:
    bodies = cache_history(700, seed=3)
    post(served, bodies)
    reply = served.client.get("/api/v1/cache", params={"since": "24h", "where": "team=support"})
    assert reply.status_code == 200, reply.text
    document = reply.json()
    assert document["filters"] == {"team": "support"}
    want = expected([b for b in bodies if b["team"] == "support"])
    cache = document["cache"]
    assert cache["calls"] == want["calls"] and document["skipped_rows"] == 0
    assert [level["level"] for level in cache["levels"]] == LEVEL_NAMES
    for level in cache["levels"]:
        figures = want["levels"][level["level"]]
        assert level["calls"] == figures["calls"]
        # Money is a JSON number with its exact decimal digits: read back through its text.
        assert Decimal(str(level["saved_usd"])) == figures["saved_usd"]
        assert Decimal(str(level["cost_usd"])) == figures["cost_usd"]
        for name in ("time_avoided_ms", "latency_p50_ms", "latency_p95_ms"):
            assert level[name] == (
                pytest.approx(figures[name], rel=1e-9) if figures[name] is not None else None
            ), (level["level"], name)
    counted = {(g["guardrail"], g["action"]): g["calls"] for g in cache["guardrails"]}
    assert counted == dict(want["actions"])
    assert cache["content_filter_blocks"] == want["blocks"]
    assert cache["time_avoided_method"].startswith("estimated")


def test_bad_parameters_are_422_naming_them(served: Served) -> None:
    for params, name in (({"since": "soon"}, "since"), ({"where": "colour=red"}, "where")):
        reply = served.client.get("/api/v1/cache", params=params)
        assert reply.status_code == 422, reply.text
        assert reply.json()["error"].startswith(f"{name}:")


def test_the_route_is_in_the_openapi_document(served: Served) -> None:
    operation = served.client.get("/openapi.json").json()["paths"]["/api/v1/cache"]["get"]
    assert {p["name"] for p in operation["parameters"]} == {"since", "where"}
    assert "422" in operation["responses"] and "503" in operation["responses"]


def test_without_a_store_the_route_is_503() -> None:
    with serve_app(None) as served:
        reply = served.client.get("/api/v1/cache")
    assert reply.status_code == 503
    assert "--db" in reply.json()["error"]


def test_the_dashboard_token_guards_the_route(tmp_path: Path) -> None:
    with serve_app(SqlStore.open(tmp_path / "aivitals.db"), dashboard_token=TOKEN) as served:
        assert served.client.get("/api/v1/cache").status_code == 401
        good = {"Authorization": f"Bearer {TOKEN}"}
        assert served.client.get("/api/v1/cache", headers=good).status_code == 200
