"""Builders shared by the query tests: a store on disk, and answers computed from the calls alone.

`write_store` fills a store (SQLite or PostgreSQL) the way the store writer does (raw rows plus rollups); the
`reference` functions compute what a query should answer straight from the `Call` objects, with
no database and none of the query code, so the two can be compared.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

from aivitals.model import Call, Score
from aivitals.query import Filters, Measures
from aivitals.store import (
    model_rollup,
    rollup,
    rows,
    schema,
    score_rollup,
    user_rollup,
    user_score_rollup,
)

from .support.helpers import make_call
from .support.postgres import StoreTargets

T0 = datetime(2026, 11, 2, tzinfo=UTC)
"""Midnight UTC, a Monday: the start of the test data."""


def write_store(
    where: Path | str, calls: Sequence[Call], scores: Sequence[Score] = ()
) -> sa.Engine:
    """A store with ``calls`` and ``scores``, both rolled up as the writer does.

    ``where``: a directory (a SQLite file in it), a SQLite file path, or a database URL (a fresh
    PostgreSQL database from the ``store_targets`` fixture). Rollups are computed once over all
    calls, so every rollup key appears once.
    """
    if isinstance(where, Path):
        where.mkdir(parents=True, exist_ok=True)
        where = str(where / "store.db")
    if "://" in where:
        # No pool: each query's connection closes when it ends, so none is left open when the
        # test's database is dropped.
        engine = sa.create_engine(where, poolclass=sa.pool.NullPool)
    else:
        engine = sa.create_engine(f"sqlite:///{where}")
    schema.metadata.create_all(engine)
    with engine.begin() as connection:
        if calls:
            connection.execute(schema.calls.insert(), [rows.call_row(c) for c in calls])
            connection.execute(schema.rollups.insert(), rollup.rollup_rows(calls))
            connection.execute(schema.user_rollups.insert(), user_rollup.user_rows(calls))
            connection.execute(schema.model_rollups.insert(), model_rollup.model_rows(calls))
        if scores:
            connection.execute(schema.scores.insert(), [rows.score_row(s) for s in scores])
            score_rollup.backfill(connection)  # the score rollups, as the writer keeps them
            user_score_rollup.backfill(connection)
    return engine


def in_window(call: Call, start: datetime, end: datetime) -> bool:
    return rows.epoch_ms(start) <= rows.epoch_ms(call.started_at) < rows.epoch_ms(end)


def passes(call: Call, filters: Filters) -> bool:
    return all((getattr(call, name) or "") == value for name, value in filters.items())


def _nearest_rank(values: list[float], q: float) -> float | None:
    """numpy's nearest rank, rounding up: the definition `aivitals.percentile` states."""
    return float(np.quantile(values, q, method="inverted_cdf")) if values else None


def _nano(value: Decimal) -> Decimal:
    return value.quantize(Decimal("1e-9"), rounding=ROUND_HALF_EVEN)


def reference(calls: Sequence[Call], scores: Iterable[Score] = ()) -> dict[str, Any]:
    """The `Measures` fields of ``calls``, computed from the calls themselves."""
    ids = {c.id for c in calls}
    named: dict[str, list[float]] = {}
    for score in scores:
        if score.call_id in ids:
            named.setdefault(score.name, []).append(score.value)
    n = len(calls)
    errors = sum(c.status == "error" for c in calls)
    cancelled = sum(c.status == "cancelled" for c in calls)
    priced = [c.cost_usd for c in calls if c.cost_usd is not None]
    total = sum(priced, Decimal(0))
    tokens = sum(c.input_tokens + c.output_tokens for c in calls)
    latencies = [c.latency_ms for c in calls]
    ttfts = [c.ttft_ms for c in calls if c.ttft_ms is not None]
    speeds = [s for s in (c.output_tokens_per_second for c in calls) if s is not None]
    lookups = [c.cache for c in calls if c.cache in ("hit", "miss")]
    return {
        "calls": n,
        "ok": n - errors - cancelled,
        "errors": errors,
        "cancelled": cancelled,
        "success_rate": (n - errors - cancelled) / n if n else None,
        "total_cost_usd": total,
        "avg_cost_usd": _nano(total / len(priced)) if priced else None,
        "cost_per_1k_tokens": _nano(total * 1000 / tokens) if priced and tokens else None,
        "unpriced_calls": n - len(priced),
        "input_tokens": sum(c.input_tokens for c in calls),
        "output_tokens": sum(c.output_tokens for c in calls),
        "cached_input_tokens": sum(c.cached_input_tokens for c in calls),
        "cache_write_tokens": sum(c.cache_write_tokens for c in calls),
        "reasoning_tokens": sum(c.reasoning_tokens for c in calls),
        "latency_avg_ms": sum(latencies) / n if n else None,
        "latency_p50_ms": _nearest_rank(latencies, 0.5),
        "latency_p95_ms": _nearest_rank(latencies, 0.95),
        "latency_p99_ms": _nearest_rank(latencies, 0.99),
        "latency_max_ms": max(latencies) if latencies else None,
        "ttft_avg_ms": sum(ttfts) / len(ttfts) if ttfts else None,
        "ttft_p50_ms": _nearest_rank(ttfts, 0.5),
        "ttft_p95_ms": _nearest_rank(ttfts, 0.95),
        "tokens_per_second": sum(speeds) / len(speeds) if speeds else None,
        "cache_hit_ratio": lookups.count("hit") / len(lookups) if lookups else None,
        "quality": {name: sum(v) / len(v) for name, v in named.items()},
    }


PERCENTILES = (
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "latency_max_ms",
    "ttft_p50_ms",
    "ttft_p95_ms",
)
FLOATS = ("success_rate", "latency_avg_ms", "ttft_avg_ms", "tokens_per_second", "cache_hit_ratio")


def assert_measures(got: Measures, want: dict[str, Any], *, sketch: bool) -> None:
    """Counts, tokens and money exactly; means to float rounding; percentiles exactly or within 1%."""
    assert got.percentiles == ("sketch" if sketch else "exact")
    for name, expected in want.items():
        value = getattr(got, name)
        if name in PERCENTILES:
            if expected is None or not sketch:
                assert value == expected, name
            else:
                assert value is not None, name
                assert abs(value - expected) <= 0.01 * expected + 1e-9, (name, value, expected)
        elif name in FLOATS and expected is not None:
            assert value is not None, name
            assert abs(value - expected) <= 1e-9 * max(1.0, abs(expected)), (name, value, expected)
        elif name == "quality":
            assert value.keys() == expected.keys()
            for key in expected:
                assert abs(value[key] - expected[key]) <= 1e-12, key
        else:
            assert value == expected, (name, value, expected)


@dataclass(frozen=True)
class Dataset:
    calls: list[Call]
    scores: list[Score]


def _pick(rng: np.random.Generator, options: Sequence[Any]) -> Any:
    return options[int(rng.integers(len(options)))]


def random_dataset(seed: int, n: int, *, days: int = 3) -> Dataset:
    """``n`` varied calls spread over ``days`` days from `T0`, a third of them scored."""
    rng = np.random.default_rng(seed)
    # Half the calls cluster within two minutes of an hour's start, so that windows cut
    # through minutes and hours that hold calls.
    hours = [int(h) for h in rng.integers(1, days * 24, 6)]
    calls = []
    for i in range(n):
        if i % 2:
            offset_ms = int(rng.integers(0, days * 86_400_000))
        else:
            offset_ms = _pick(rng, hours) * 3_600_000 + int(rng.integers(-120_000, 120_000))
        status = _pick(rng, ["ok"] * 8 + ["error", "cancelled"])
        model = _pick(rng, ("gpt-4o-mini", "gpt-4o", "claude-3-5-haiku"))
        output = int(rng.integers(0, 500))
        latency = float(rng.lognormal(6.0, 0.9))
        # The first token comes within the call (the record refuses a TTFT past its latency).
        ttft = min(latency, float(rng.lognormal(4.5, 0.5))) if rng.random() < 0.6 else None
        calls.append(
            make_call(
                started_at=T0 + timedelta(milliseconds=offset_ms),
                model=model,
                provider="anthropic" if model.startswith("claude") else "openai",
                latency_ms=latency,
                ttft_ms=ttft,
                input_tokens=int(rng.integers(100, 5000)),
                cached_input_tokens=int(rng.integers(0, 100)),
                output_tokens=output,
                reasoning_tokens=int(rng.integers(0, output + 1)),
                cost_usd=None
                if rng.random() < 0.15
                else Decimal(int(rng.integers(1, 50_000_000))).scaleb(-9),
                status=status,
                error_type=_pick(rng, ("rate_limit", "timeout")) if status == "error" else None,
                cache=_pick(rng, (None, "hit", "miss", "bypass")),
                feature=_pick(rng, (None, "search", "chat")),
                team=_pick(rng, ("core", "growth")),
                user=_pick(rng, ("ann", "bob", "cy", "dee")),
            )
        )
    scores = [
        Score(call_id=c.id, name=_pick(rng, ("relevance", "tone")), value=float(rng.random()))
        for c in calls
        if rng.random() < 0.33
    ]
    return Dataset(calls, scores)


def test_write_store_keeps_every_call_and_one_row_per_rollup_key(
    store_targets: StoreTargets,
) -> None:
    data = random_dataset(1, 50)
    engine = write_store(store_targets(), data.calls, data.scores)
    with engine.connect() as connection:
        stored = connection.execute(sa.select(sa.func.count()).select_from(schema.calls)).scalar()
        keys = connection.execute(
            sa.select(
                sa.func.count(), sa.func.sum(schema.rollups.c.calls), schema.rollups.c.granularity
            ).group_by(schema.rollups.c.granularity)
        ).all()
    assert stored == 50
    assert {granularity: total for _, total, granularity in keys} == {
        60: 50,
        3600: 50,
        86400: 50,
    }
