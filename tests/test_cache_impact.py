"""Cache impact and guardrail actions (`Queries.cache_impact`) over a history posted through the
ingest API, on SQLite and PostgreSQL; every expected figure is worked out here from the bodies
posted, with numpy and `Decimal`, never by the code under test."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from aivitals.query import Filters, Queries, parse_since
from aivitals.query.cache_impact import TIME_AVOIDED_METHOD, CacheImpact
from aivitals.store import rows
from aivitals.store.schema import calls
from aivitals.store.sql import SqlStore
from tests.support.helpers import make_call
from tests.support.server_app import NOW, Served, serve_app

MODELS = ("m-a", "m-b", "m-c")
"""m-c is only ever answered from cache or uncached: its hits have no miss to estimate from."""
GUARDRAIL_TAGS = (
    "card:redact",
    "injection:flag",
    "card:redact,injection:flag",
    "email:redact,secrets:flag",
)


def cache_history(n: int, *, seed: int) -> list[dict[str, Any]]:
    """``n`` call bodies over the 24 hours before `NOW` (and a few two days before): exact and
    semantic hits, misses (some failed), uncached calls, guardrail tags and blocks."""
    rng = np.random.default_rng(seed)
    bodies: list[dict[str, Any]] = []
    for index in range(n):
        model = MODELS[int(rng.integers(0, 3))]
        choices = ["exact", "semantic", "uncached"] if model == "m-c" else LEVEL_NAMES
        level = choices[int(rng.integers(0, len(choices)))]
        hours = 24 * (index + 0.5) / n if index % 40 else 48 + index / n  # a few outside
        body: dict[str, Any] = {
            "provider": "openai",
            "model": model,
            "input_tokens": int(rng.integers(10, 2000)),
            "output_tokens": int(rng.integers(1, 500)),
            "team": ("search", "support")[index % 2],
            "started_at": (NOW - timedelta(hours=hours)).isoformat(),
        }
        if level in ("exact", "semantic"):
            body.update(
                cache="hit",
                cache_level=level,
                latency_ms=round(float(rng.lognormal(np.log(4), 0.5)), 3),
                cost_usd="0",
                saved_usd=f"{rng.integers(1, 90_000) / 1e7:.7f}",
            )
            if level == "semantic":
                body["tags"] = {"cache_similarity": f"{rng.uniform(0.9, 1):.3f}"}
        else:
            body.update(
                latency_ms=round(float(rng.lognormal(np.log(900), 0.6)), 3),
                cost_usd=f"{rng.integers(1, 90_000) / 1e7:.7f}",
            )
            if level == "miss":
                body.update(cache="miss", cache_level="exact")
            elif index % 3 == 0:
                body["cache"] = "bypass"
            if level == "miss" and index % 7 == 0:
                body.update(status="error", error_type="rate_limit", http_status=429)
                body["latency_ms"] = round(float(rng.uniform(20, 60)), 3)  # a fast refusal
        if index % 5 == 0:
            tags = body.setdefault("tags", {})
            tags["guardrail"] = GUARDRAIL_TAGS[index // 5 % len(GUARDRAIL_TAGS)]
        if index % 23 == 0:
            # Blocked on input: never sent upstream, never looked up in the cache.
            body.update(
                status="error",
                error_type="content_filter",
                http_status=400,
                latency_ms=round(float(rng.uniform(0.5, 3)), 3),
                output_tokens=0,
                cost_usd="0",
                tags={"guardrail": "injection:block"},
            )
            for name in ("cache", "cache_level", "saved_usd"):
                body.pop(name, None)
        bodies.append(body)
    return bodies


LEVEL_NAMES = ["exact", "semantic", "miss", "uncached"]


def level_of(body: dict[str, Any]) -> str:
    if body.get("cache") == "hit":
        return "semantic" if body.get("cache_level") == "semantic" else "exact"
    return "miss" if body.get("cache") == "miss" else "uncached"


def in_window(body: dict[str, Any]) -> bool:
    window = parse_since("24h", now=NOW)
    started = str(body["started_at"])
    return window.start.isoformat() <= started < window.end.isoformat()


def post(served: Served, bodies: Sequence[dict[str, Any]]) -> None:
    for first in range(0, len(bodies), 500):
        reply = served.client.post(
            "/api/v1/calls", json={"calls": list(bodies[first : first + 500])}
        )
        assert reply.status_code == 202, reply.text
    assert served.runtime.recorder.flush(timeout_s=30)


def nearest_rank(values: list[float], q: float) -> float:
    """The percentile rule the queries document (aivitals.percentile): numpy's inverted_cdf."""
    return float(np.percentile(np.asarray(values), q * 100, method="inverted_cdf"))


def expected(bodies: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Every figure `cache_impact` should give, from the bodies alone."""
    kept = [body for body in bodies if in_window(body)]
    ok_misses: dict[str, list[float]] = {}
    for body in kept:
        if level_of(body) == "miss" and body.get("status", "ok") == "ok":
            ok_misses.setdefault(body["model"], []).append(body["latency_ms"])
    mean_miss = {model: float(np.mean(values)) for model, values in ok_misses.items()}
    levels: dict[str, dict[str, Any]] = {}
    # Percentiles for hits and misses, when there are hits (the uncached calls' are the summary's).
    any_hit = any(level_of(body) in ("exact", "semantic") for body in kept)
    for name in LEVEL_NAMES:
        mine = [body for body in kept if level_of(body) == name]
        latencies = [body["latency_ms"] for body in mine]
        hits = name in ("exact", "semantic")
        ranked = mine and name != "uncached" and any_hit
        estimated = [mean_miss[b["model"]] for b in mine if b["model"] in mean_miss]
        levels[name] = {
            "calls": len(mine),
            "share": len(mine) / len(kept),
            "cost_usd": sum((Decimal(b["cost_usd"]) for b in mine), Decimal(0)),
            "saved_usd": sum((Decimal(b.get("saved_usd", "0")) for b in mine), Decimal(0)),
            "time_avoided_ms": float(np.sum(estimated)) if hits and mine else None,
            "unestimated_hits": sum(1 for b in mine if b["model"] not in mean_miss) if hits else 0,
            "latency_avg_ms": float(np.mean(latencies)) if mine else None,
            "latency_p50_ms": nearest_rank(latencies, 0.5) if ranked else None,
            "latency_p95_ms": nearest_rank(latencies, 0.95) if ranked else None,
        }
    actions: Counter[tuple[str, str]] = Counter()
    for body in kept:
        tag = body.get("tags", {}).get("guardrail")
        for item in tag.split(",") if tag else []:
            name, action = item.split(":")
            actions[(name, action)] += 1
    return {
        "calls": len(kept),
        "levels": levels,
        "actions": actions,
        "guarded": sum(1 for b in kept if "guardrail" in b.get("tags", {})),
        "blocks": sum(1 for b in kept if b.get("error_type") == "content_filter"),
    }


def assert_impact(found: CacheImpact, want: dict[str, Any]) -> None:
    assert found.calls == want["calls"]
    assert [level.level for level in found.levels] == LEVEL_NAMES
    for level in found.levels:
        figures = want["levels"][level.level]
        assert level.calls == figures["calls"], level.level
        assert level.share == pytest.approx(figures["share"])
        assert level.cost_usd == figures["cost_usd"], level.level
        assert level.saved_usd == figures["saved_usd"], level.level
        assert level.unestimated_hits == figures["unestimated_hits"], level.level
        for name in ("time_avoided_ms", "latency_avg_ms", "latency_p50_ms", "latency_p95_ms"):
            value, wanted = getattr(level, name), figures[name]
            assert (value is None) == (wanted is None), (level.level, name)
            if wanted is not None:
                assert value == pytest.approx(wanted, rel=1e-9), (level.level, name)
    hits = want["levels"]["exact"]["calls"] + want["levels"]["semantic"]["calls"]
    assert found.hits == hits
    looked = hits + want["levels"]["miss"]["calls"]
    assert found.hit_ratio == (pytest.approx(hits / looked) if looked else None)
    assert found.saved_usd == sum((f["saved_usd"] for f in want["levels"].values()), Decimal(0))
    counted = {(g.guardrail, g.action): g.calls for g in found.guardrails}
    assert counted == dict(want["actions"])
    calls_in_order = [g.calls for g in found.guardrails]
    assert calls_in_order == sorted(calls_in_order, reverse=True)
    assert found.guarded_calls == want["guarded"]
    assert found.content_filter_blocks == want["blocks"]
    assert found.time_avoided_method == TIME_AVOIDED_METHOD
    assert found.skipped_rows == 0


@pytest.fixture
def served(store_target: str) -> Any:
    with serve_app(SqlStore.open(store_target)) as served:
        yield served


def test_each_level_s_share_spend_avoided_time_and_latency_match_the_raw_calls(
    served: Served,
) -> None:
    bodies = cache_history(900, seed=18)
    post(served, bodies)
    assert served.store is not None
    found = Queries(served.store.engine).cache_impact(parse_since("24h", now=NOW))
    want = expected(bodies)
    assert want["levels"]["semantic"]["calls"] > 50 and want["levels"]["exact"]["calls"] > 50
    assert want["levels"]["exact"]["unestimated_hits"] > 0  # m-c's hits
    assert want["blocks"] > 0 and len(want["actions"]) == 5
    assert_impact(found, want)
    # The summary's hit ratio, read from rollups, is the same figure.
    summary = Queries(served.store.engine).summary(parse_since("24h", now=NOW), quality=False)
    assert found.hit_ratio == pytest.approx(summary.cache_hit_ratio)
    # Hits are answered far faster than misses: the figures the report puts side by side.
    by_level = {level.level: level for level in found.levels}
    assert by_level["semantic"].latency_p95_ms < by_level["miss"].latency_p50_ms  # type: ignore[operator]


def test_filters_narrow_every_figure(served: Served) -> None:
    bodies = cache_history(600, seed=7)
    post(served, bodies)
    assert served.store is not None
    queries = Queries(served.store.engine)
    window = parse_since("24h", now=NOW)
    search = queries.cache_impact(window, Filters(team="search"))
    assert_impact(search, expected([b for b in bodies if b["team"] == "search"]))
    m_b = queries.cache_impact(window, Filters(model="m-b"))
    assert_impact(m_b, expected([b for b in bodies if b["model"] == "m-b"]))


def test_a_window_without_hits_has_no_time_avoided_and_no_guardrails(served: Served) -> None:
    bodies = [
        {
            "provider": "openai",
            "model": "m-a",
            "latency_ms": latency,
            "input_tokens": 10,
            "output_tokens": 5,
            "cost_usd": "0.001",
            "cache": "miss",
            "started_at": (NOW - timedelta(minutes=5 + i)).isoformat(),
            "tags": {"note": '"guardrail":not a tag'},
        }
        for i, latency in enumerate([100.0, 300.0, 200.0])
    ]
    post(served, bodies)
    assert served.store is not None
    found = Queries(served.store.engine).cache_impact(parse_since("1h", now=NOW))
    assert (found.calls, found.hits, found.hit_ratio, found.time_avoided_ms) == (3, 0, 0.0, 0.0)
    exact = found.levels[0]
    assert (exact.calls, exact.time_avoided_ms, exact.latency_p50_ms) == (0, None, None)
    miss = found.levels[2]
    assert (miss.latency_avg_ms, miss.cost_usd) == (200.0, Decimal("0.003"))
    assert miss.latency_p50_ms is None  # nothing to set it against: not read
    assert found.guardrails == [] and found.guarded_calls == 0
    empty = Queries(served.store.engine).cache_impact(
        parse_since("1h", now=NOW - timedelta(days=9))
    )
    assert (empty.calls, empty.hit_ratio, empty.levels[2].share) == (0, None, None)


def test_rows_out_of_range_or_with_broken_tags_are_left_out_and_counted(served: Served) -> None:
    good = cache_history(60, seed=2)
    post(served, good)
    assert served.store is not None
    started = NOW - timedelta(minutes=30)
    base = {"provider": "openai", "model": "m-a", "latency_ms": 10.0, "started_at": started}
    out_of_range = rows.call_row(make_call(**base, cache="hit", cache_level="semantic"))
    out_of_range["latency_ms"] = 1e300  # written by another tool: no source can send it
    broken = rows.call_row(make_call(**base, cache="miss"))
    broken["tags"] = '{"guardrail":"card:redact"'  # cut short
    with served.store.engine.begin() as connection:
        connection.execute(sa.insert(calls), [out_of_range, broken])
    found = Queries(served.store.engine).cache_impact(parse_since("24h", now=NOW))
    want = expected(good)
    want["calls"] += 1  # the broken tags' call still counts; its guardrail tag cannot be read
    want["levels"]["miss"]["calls"] += 1
    assert found.skipped_rows == 2
    assert found.calls == want["calls"]
    assert found.levels[1].calls == want["levels"]["semantic"]["calls"]
    assert {(g.guardrail, g.action): g.calls for g in found.guardrails} == dict(want["actions"])


def test_a_window_of_uncached_calls_only_is_answered_alike(served: Served) -> None:
    # No call looked in the cache: the levels come from the rollups, the guardrails from the tags.
    bodies = [body for body in cache_history(900, seed=23) if level_of(body) == "uncached"]
    post(served, bodies)
    assert served.store is not None
    queries = Queries(served.store.engine)
    window = parse_since("24h", now=NOW)
    want = expected(bodies)
    assert want["blocks"] and want["actions"] and want["levels"]["uncached"]["calls"] > 100
    assert_impact(queries.cache_impact(window), want)
    # A filter on user, which rollups do not keep, reads the raw calls: the same figures.
    assert_impact(queries.cache_impact(window, Filters(user="")), want)
